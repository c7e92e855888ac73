//! Loss functions against their textbook formulas (computed here, not by
//! netc), and every optimizer option against PyTorch's published update
//! rules, simulated step by step in f64 on a problem with a known gradient.

mod common;

use common::device::test_cache;
use common::test_device;
use netc::check::{check, Mode, Model};
use netc::diag::SourceFile;
use netc::exec::{Executable, Options};
use netc::rng::Rng;
use netc::tensor::Tensor;
use netc::train::config::{Batch, Length, TrainConfig};
use netc::train::optim::Optimizer;
use netc::train::session::Session;
use std::collections::{BTreeMap, HashMap};

fn model(src: &str, mode: Mode) -> Model {
    let file = SourceFile::new("test.net", src);
    let mut checked = check(&netc::syntax::parse(&file).unwrap(), mode);
    assert!(!checked.has_errors(), "{}", file.render(&checked.diagnostics, false));
    checked.models.swap_remove(0)
}

/// The loss of `loss_expr` over scores `s: f32[B, 5]` and a target, on the device.
fn loss_on_device(loss_expr: &str, target_ty: &str, s: &Tensor, t: &Tensor) -> f64 {
    let src = format!(
        "model m {{\n    input s: f32[B, 5]\n    output y = s\n    train {{\n        target t: {target_ty}\n        loss: {loss_expr}\n    }}\n}}\n"
    );
    let m = model(&src, Mode::Train);
    let g = m
        .graph
        .specialize(&HashMap::from([("B".to_string(), s.shape[0] as i64)]))
        .unwrap();
    let loss = m.loss.unwrap();
    let options = Options {
        cache: Some(test_cache()),
        target: None,
        source: None,
    };
    let mut exe = Executable::new(g.clone(), &[loss], &test_device(), &options).unwrap();
    exe.write(g.input_named("s").unwrap(), s).unwrap();
    exe.write(g.input_named("t").unwrap(), t).unwrap();
    exe.run().unwrap();
    exe.read(loss).unwrap().to_f64_vec()[0]
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{what}: {got} vs {want}"
    );
}

fn log_softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    row.iter().map(|v| v - lse).collect()
}

#[test]
fn losses_follow_their_formulas() {
    let mut rng = Rng::new(5);
    let (b, c) = (6, 5);
    let s: Vec<f32> = (0..b * c).map(|_| (rng.normal() * 2.0) as f32).collect();
    let labels: Vec<i64> = (0..b).map(|_| rng.below(c as u64) as i64).collect();
    let probs: Vec<f32> = (0..b * c).map(|_| rng.uniform() as f32).collect();
    let scores = Tensor::f32(vec![b, c], s.clone());
    let rows: Vec<Vec<f64>> = s.chunks(c).map(|r| r.iter().map(|&v| v as f64).collect()).collect();
    let class = Tensor::i64(vec![b], labels.clone());
    let soft = Tensor::f32(vec![b, c], probs.clone());

    // Cross entropy, plain and with label smoothing ε: (1 − ε)·nll + ε·mean_c(−log p).
    let nll: f64 = rows
        .iter()
        .zip(&labels)
        .map(|(r, &l)| -log_softmax(r)[l as usize])
        .sum::<f64>()
        / b as f64;
    close(
        loss_on_device("cross_entropy(s, t)", "i64[B]", &scores, &class),
        nll,
        "cross_entropy",
    );
    let uniform: f64 = rows
        .iter()
        .map(|r| -log_softmax(r).iter().sum::<f64>() / c as f64)
        .sum::<f64>()
        / b as f64;
    let smoothed = 0.9 * nll + 0.1 * uniform;
    close(
        loss_on_device("cross_entropy(s, t, label_smoothing: 0.1)", "i64[B]", &scores, &class),
        smoothed,
        "label smoothing",
    );
    // nll_loss reads log-probabilities as given.
    let picked: f64 = rows.iter().zip(&labels).map(|(r, &l)| -r[l as usize]).sum::<f64>() / b as f64;
    close(
        loss_on_device("nll_loss(s, t)", "i64[B]", &scores, &class),
        picked,
        "nll_loss",
    );
    // Mean squared error and binary cross entropy on logits.
    let mse: f64 = s
        .iter()
        .zip(&probs)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / (b * c) as f64;
    close(
        loss_on_device("mse_loss(s, t)", "f32[B, 5]", &scores, &soft),
        mse,
        "mse_loss",
    );
    let bce: f64 = s
        .iter()
        .zip(&probs)
        .map(|(&x, &y)| {
            let (x, y) = (x as f64, y as f64);
            let p = 1.0 / (1.0 + (-x).exp());
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum::<f64>()
        / (b * c) as f64;
    close(
        loss_on_device("binary_cross_entropy_with_logits(s, t)", "f32[B, 5]", &scores, &soft),
        bce,
        "bce",
    );
}

/// A linear model whose loss, mean(x @ wᵀ), has the constant gradient
/// mean(x) with respect to w: optimizer steps can be simulated exactly.
const LINEAR: &str = "model lin {\n    input x: f32[B, 4]\n    fc = Linear(4, 1, bias: false)\n    output y = x |> fc\n    train {\n        loss: mean(y, [0, 1])\n    }\n}\n";

/// PyTorch's update rules (torch.optim docs), in f64.
struct Simulated {
    w: Vec<f64>,
    buf: Option<Vec<f64>>,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Simulated {
    fn step(&mut self, opt: &Optimizer, g: &[f64], lr: f64) {
        match *opt {
            Optimizer::Sgd {
                momentum,
                dampening,
                nesterov,
                weight_decay,
                ..
            } => {
                let d: Vec<f64> = g.iter().zip(&self.w).map(|(g, w)| g + weight_decay * w).collect();
                let dir = if momentum != 0.0 {
                    let buf = match self.buf.take() {
                        None => d.clone(),
                        Some(b) => b
                            .iter()
                            .zip(&d)
                            .map(|(b, d)| momentum * b + (1.0 - dampening) * d)
                            .collect(),
                    };
                    let dir = if nesterov {
                        d.iter().zip(&buf).map(|(d, b)| d + momentum * b).collect()
                    } else {
                        buf.clone()
                    };
                    self.buf = Some(buf);
                    dir
                } else {
                    d
                };
                self.w = self.w.iter().zip(&dir).map(|(w, d)| w - lr * d).collect();
            }
            Optimizer::Adam {
                betas: (b1, b2),
                eps,
                weight_decay,
                decoupled,
                ..
            } => {
                self.t += 1;
                if decoupled {
                    self.w = self.w.iter().map(|w| w * (1.0 - lr * weight_decay)).collect();
                }
                for (i, &gi) in g.iter().enumerate() {
                    let d = if decoupled { gi } else { gi + weight_decay * self.w[i] };
                    self.m[i] = b1 * self.m[i] + (1.0 - b1) * d;
                    self.v[i] = b2 * self.v[i] + (1.0 - b2) * d * d;
                    let (bc1, bc2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
                    self.w[i] -= lr / bc1 * self.m[i] / (self.v[i].sqrt() / bc2.sqrt() + eps);
                }
            }
        }
    }
}

fn run_linear(opt: Optimizer, clip: Option<f64>) {
    let m = model(LINEAR, Mode::Train);
    let mut rng = Rng::new(2);
    let x: Vec<f32> = (0..3 * 4).map(|_| rng.normal() as f32).collect();
    let w0: Vec<f32> = (0..4).map(|_| rng.normal() as f32).collect();
    let g: Vec<f64> = (0..4)
        .map(|j| (0..3).map(|i| x[i * 4 + j] as f64).sum::<f64>() / 3.0)
        .collect();
    let config = TrainConfig {
        optimizer: opt.clone(),
        clip_grad_norm: clip,
        batch: Batch::All,
        length: Length::Steps(5),
        shuffle: false,
        ..TrainConfig::default()
    };
    let options = Options {
        cache: Some(test_cache()),
        target: None,
        source: None,
    };
    let mut session = Session::new(&m, None, config, 3, test_device(), options).unwrap();
    session
        .load(&BTreeMap::from([(
            "fc.weight".to_string(),
            Tensor::f32(vec![1, 4], w0.clone()),
        )]))
        .unwrap();
    let mut sim = Simulated {
        w: w0.iter().map(|&v| v as f64).collect(),
        buf: None,
        m: vec![0.0; 4],
        v: vec![0.0; 4],
        t: 0,
    };
    let fields = vec![("x".to_string(), Tensor::f32(vec![3, 4], x))];
    for step in 0..5 {
        session.step(&fields, 0, 5).unwrap();
        let g = match clip {
            Some(max) => {
                let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
                let scale = (max / (norm + 1e-6)).min(1.0);
                g.iter().map(|v| v * scale).collect()
            }
            None => g.clone(),
        };
        sim.step(&opt, &g, opt.lr());
        let got = session.tensors(false).unwrap()["fc.weight"].to_f64_vec();
        for (a, b) in got.iter().zip(&sim.w) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{} step {step}: {got:?} vs {:?}",
                opt.name(),
                sim.w
            );
        }
    }
}

#[test]
fn sgd_with_momentum_dampening_and_weight_decay() {
    run_linear(
        Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.3,
            nesterov: false,
            weight_decay: 0.01,
        },
        None,
    );
}

#[test]
fn sgd_with_nesterov_momentum() {
    run_linear(
        Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.8,
            dampening: 0.0,
            nesterov: true,
            weight_decay: 0.02,
        },
        None,
    );
}

#[test]
fn plain_sgd() {
    run_linear(
        Optimizer::Sgd {
            lr: 0.3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        },
        None,
    );
}

#[test]
fn adam_with_l2_weight_decay() {
    run_linear(
        Optimizer::Adam {
            lr: 0.01,
            betas: (0.8, 0.95),
            eps: 1e-6,
            weight_decay: 0.1,
            decoupled: false,
        },
        None,
    );
}

#[test]
fn adamw_decouples_weight_decay() {
    run_linear(
        Optimizer::Adam {
            lr: 0.01,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.3,
            decoupled: true,
        },
        None,
    );
}

#[test]
fn gradients_are_clipped_by_their_global_norm() {
    run_linear(
        Optimizer::Sgd {
            lr: 0.5,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        },
        Some(0.05),
    );
}
