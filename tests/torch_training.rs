//! Training agrees with PyTorch: for the seed CNN, a small MLP and a
//! batch-norm model, the loss and every parameter gradient match PyTorch's
//! within 1e-4 relative error, batch norm's running statistics are updated
//! as PyTorch updates them, and 20 full-batch steps of SGD with momentum and
//! of Adam follow PyTorch's loss trajectory within 1e-3.

mod common;

use common::device::{relative_error, test_cache};
use common::torch;
use netc::check::{check, Mode, Model};
use netc::diag::SourceFile;
use netc::exec::bind::param_nodes;
use netc::exec::{Executable, Options};
use netc::tensor::Tensor;
use netc::train::config::{Batch, Length, TrainConfig};
use netc::train::optim::Optimizer;
use netc::train::session::Session;
use netc::train::step;
use serde_json::Value;
use std::collections::HashMap;

/// The model a reference was made from, with PyTorch's loss: the model's own
/// train section, or (for examples without one) `cross_entropy(logits, label)`.
fn model(meta: &Value, mode: Mode) -> Model {
    let path = common::root().join(meta["net"].as_str().unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    let load = |text: String| {
        let file = SourceFile::new(path.display().to_string(), text);
        let mut checked = check(&netc::syntax::parse(&file).unwrap(), mode);
        assert!(!checked.has_errors(), "{}", file.render(&checked.diagnostics, false));
        checked.models.swap_remove(0)
    };
    let model = load(text.clone());
    if model.loss.is_some() {
        return model;
    }
    let mut text = text;
    let end = text.rfind('}').unwrap();
    let output = meta["output"].as_str().unwrap();
    text.insert_str(
        end,
        &format!("    train {{\n        target label: i64[B]\n        loss: cross_entropy({output}, label)\n    }}\n"),
    );
    load(text)
}

fn data(meta: &Value) -> (String, Tensor, Tensor) {
    let files = &meta["files"];
    let x = torch::npy(files["x"].as_str().unwrap());
    let y = torch::npy(files["y"].as_str().unwrap());
    (meta["input"].as_str().unwrap().to_string(), x, y)
}

fn loss_and_gradients(name: &str) {
    let meta = torch::json(&format!("train_{name}"));
    let model = model(&meta, Mode::Train);
    let weights = torch::weights(&meta);
    let (input, x, y) = data(&meta);
    let s = step::build(&model, None, None).unwrap();
    let graph = s
        .graph
        .specialize(&HashMap::from([("B".to_string(), x.shape[0] as i64)]))
        .unwrap();
    let mut required = vec![s.loss];
    required.extend(s.grads.iter().map(|(_, g)| *g));
    let options = Options {
        cache: Some(test_cache()),
        target: None,
        source: None,
    };
    let mut exe = Executable::new(graph.clone(), &required, &common::test_device(), &options).unwrap();
    for (pname, id) in param_nodes(&graph) {
        if exe.plan.slot_of.contains_key(&id) {
            exe.write(id, &weights[&pname]).unwrap();
        }
    }
    exe.write(graph.input_named(&input).unwrap(), &x).unwrap();
    exe.write(graph.input_named("label").unwrap(), &y).unwrap();
    exe.run().unwrap();
    let files = &meta["files"];
    let want_loss = torch::npy(files["loss"].as_str().unwrap()).to_f64_vec()[0];
    let got_loss = exe.read(s.loss).unwrap().to_f64_vec()[0];
    assert!(
        (got_loss - want_loss).abs() <= 1e-4 * want_loss.abs(),
        "{name}: loss {got_loss} vs PyTorch {want_loss}"
    );
    let want = netc::io::read_safetensors(torch::dir().join(files["grads"].as_str().unwrap())).unwrap();
    let sampled = files["grads_sampled"]
        .as_str()
        .map(|f| netc::io::read_safetensors(torch::dir().join(f)).unwrap());
    let largest = want
        .values()
        .flat_map(|t| t.to_f64_vec())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let mut checked = 0;
    for (p, g) in &s.grads {
        let pname = match model.graph.op(*p) {
            netc::ops::Op::Param(prm) => prm.name.clone(),
            _ => unreachable!(),
        };
        let got = exe.read(*g).unwrap().to_f64_vec();
        if let Some(w) = want.get(&pname) {
            // A gradient that is zero in exact arithmetic (a bias right before
            // batch norm) is rounding noise on both sides: measure it against
            // the scale of the model's largest gradient instead of its own.
            let w = w.to_f64_vec();
            let own = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let worst = got.iter().zip(&w).fold(0.0f64, |m, (g, r)| m.max((g - r).abs()));
            let err = worst / own.max(1e-3 * largest);
            assert!(err <= 1e-4, "{name}: gradient of {pname}: relative error {err:e}");
        } else {
            // Too large to commit: every 127th element and whole-tensor sums.
            let sm = sampled
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no reference gradient for {pname}"));
            let idx = sm[&format!("{pname}.index")].to_f64_vec();
            let vals = sm[&format!("{pname}.values")].to_f64_vec();
            let picked: Vec<f64> = idx.iter().map(|&i| got[i as usize]).collect();
            let err = relative_error(&picked, &vals);
            assert!(
                err <= 1e-4,
                "{name}: sampled gradient of {pname}: relative error {err:e}"
            );
            let abs_sum: f64 = got.iter().map(|v| v.abs()).sum();
            let want_abs = sm[&format!("{pname}.abs_sum")].to_f64_vec()[0];
            assert!(
                (abs_sum - want_abs).abs() <= 1e-4 * want_abs,
                "{name}: Σ|grad {pname}| {abs_sum} vs {want_abs}"
            );
        }
        checked += 1;
    }
    assert_eq!(
        checked,
        meta["params"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["trainable"] == true)
            .count(),
        "{name}: every parameter has a gradient"
    );
}

fn trajectory(name: &str, which: &str) {
    let meta = torch::json(&format!("train_{name}"));
    let train_model = model(&meta, Mode::Train);
    let (input, x, y) = data(&meta);
    let h = &meta[which];
    let optimizer = match which {
        "sgd" => Optimizer::Sgd {
            lr: h["lr"].as_f64().unwrap(),
            momentum: h["momentum"].as_f64().unwrap(),
            dampening: h["dampening"].as_f64().unwrap(),
            nesterov: h["nesterov"].as_bool().unwrap(),
            weight_decay: h["weight_decay"].as_f64().unwrap(),
        },
        _ => Optimizer::Adam {
            lr: h["lr"].as_f64().unwrap(),
            betas: (h["betas"][0].as_f64().unwrap(), h["betas"][1].as_f64().unwrap()),
            eps: h["eps"].as_f64().unwrap(),
            weight_decay: h["weight_decay"].as_f64().unwrap(),
            decoupled: false,
        },
    };
    let steps = meta["steps"].as_u64().unwrap();
    let config = TrainConfig {
        optimizer,
        batch: Batch::All,
        length: Length::Steps(steps),
        shuffle: false,
        ..TrainConfig::default()
    };
    let options = Options {
        cache: Some(test_cache()),
        target: None,
        source: None,
    };
    let mut session = Session::new(&train_model, None, config, x.shape[0], common::test_device(), options).unwrap();
    session.load(&torch::weights(&meta)).unwrap();
    let want = torch::npy(meta["files"][which].as_str().unwrap()).to_f64_vec();
    let fields = vec![(input, x), ("label".to_string(), y)];
    for (i, want) in want.iter().enumerate() {
        let (loss, _) = session.step(&fields, 0, steps).unwrap();
        assert!(
            (loss - want).abs() <= 1e-3 * want.abs().max(1.0),
            "{name} {which}: step {i}: loss {loss} vs PyTorch {want}"
        );
    }
    if name == "bn_train" && which == "sgd" {
        // The first step also updated the running statistics; check them
        // against PyTorch's one-forward-pass values via a fresh session.
        let mut fresh = Session::new(
            &train_model,
            None,
            session.config.clone(),
            fields[0].1.shape[0],
            common::test_device(),
            Options {
                cache: Some(test_cache()),
                target: None,
                source: None,
            },
        )
        .unwrap();
        fresh.load(&torch::weights(&meta)).unwrap();
        fresh.step(&fields, 0, steps).unwrap();
        let after = netc::io::read_safetensors(torch::dir().join(meta["files"]["after1"].as_str().unwrap())).unwrap();
        let got = fresh.tensors(false).unwrap();
        for (k, want) in &after {
            let err = relative_error(&got[k].to_f64_vec(), &want.to_f64_vec());
            assert!(err <= 1e-5, "bn_train: {k} after one step: relative error {err:e}");
        }
    }
}

#[test]
fn seed_cnn_loss_and_gradients() {
    loss_and_gradients("cifar_cnn");
}

#[test]
fn mlp_loss_and_gradients() {
    loss_and_gradients("mlp");
}

#[test]
fn batchnorm_training_loss_and_gradients() {
    loss_and_gradients("bn_train");
}

#[test]
fn seed_cnn_sgd_momentum_trajectory() {
    trajectory("cifar_cnn", "sgd");
}

#[test]
fn seed_cnn_adam_trajectory() {
    trajectory("cifar_cnn", "adam");
}

#[test]
fn mlp_sgd_momentum_trajectory() {
    trajectory("mlp", "sgd");
}

#[test]
fn mlp_adam_trajectory() {
    trajectory("mlp", "adam");
}

#[test]
fn batchnorm_sgd_trajectory_and_running_statistics() {
    trajectory("bn_train", "sgd");
}

#[test]
fn batchnorm_adam_trajectory() {
    trajectory("bn_train", "adam");
}
