//! The `train` section's settings, read into a typed configuration. Every
//! mistake is a diagnostic pointing at the setting.

use super::optim::Optimizer;
use crate::data::spec::{Columns, CsvHeader, CsvSpec, Normalize};
use crate::data::DataSpec;
use crate::diag::{did_you_mean, Diagnostic, Span};
use crate::syntax::ast::{self, ExprKind};
use crate::tensor::DType;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum Batch {
    Size(usize),
    /// The whole training set in every step (no shuffling needed).
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    Epochs(u64),
    Steps(u64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    /// lr · gamma^(epoch / every), as `StepLR` (in epochs).
    Step {
        every: u64,
        gamma: f64,
    },
    /// Cosine from lr to `min_lr` over the run, as `CosineAnnealingLR`.
    Cosine {
        min_lr: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Validation {
    Data(DataSpec),
    /// The last fraction of the training data.
    Holdout(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Loss,
    Accuracy,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub data: Option<DataSpec>,
    pub validation: Option<Validation>,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    /// Steps of linear warm-up from 0 to the learning rate.
    pub warmup: u64,
    pub clip_grad_norm: Option<f64>,
    pub batch: Batch,
    pub length: Length,
    pub shuffle: bool,
    pub seed: u64,
    pub metrics: Vec<Metric>,
}

impl TrainConfig {
    pub fn batch_size(&self) -> Option<usize> {
        match self.batch {
            Batch::Size(n) => Some(n),
            Batch::All => None,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            data: None,
            validation: None,
            optimizer: Optimizer::Sgd {
                lr: 0.01,
                momentum: 0.0,
                dampening: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            schedule: Schedule::Constant,
            warmup: 0,
            clip_grad_norm: None,
            batch: Batch::Size(32),
            length: Length::Epochs(1),
            shuffle: true,
            seed: 0,
            metrics: vec![Metric::Loss],
        }
    }
}

const KEYS: &[&str] = &[
    "data",
    "validation",
    "loss",
    "optimizer",
    "schedule",
    "warmup",
    "clip_grad_norm",
    "batch",
    "epochs",
    "steps",
    "shuffle",
    "seed",
    "metrics",
];

/// Field names the data files fill: the model's inputs, then its targets.
pub struct Fields<'a> {
    pub inputs: &'a [String],
    pub targets: &'a [String],
}

/// Reads a `train` section. Relative data paths resolve against `base`
/// (the folder of the `.net` file), so a model trains from any directory.
pub fn read(section: &ast::TrainSection, fields: &Fields, base: &Path) -> Result<TrainConfig, Vec<Diagnostic>> {
    let mut c = TrainConfig::default();
    let mut errors = Vec::new();
    let mut seen: Vec<(&str, Span)> = Vec::new();
    for s in &section.settings {
        let key = s.key.name.as_str();
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            errors.push(
                Diagnostic::error("E0103", format!("`{key}` is set twice"))
                    .primary(s.key.span.clone(), "set again here")
                    .secondary(first.clone(), "first set here"),
            );
            continue;
        }
        seen.push((key, s.key.span.clone()));
        let v = &s.value;
        let result = match key {
            "loss" => Ok(()),
            "data" => data_source(v, fields, base).map(|d| c.data = Some(d)),
            "validation" => match &v.kind {
                ExprKind::Float(f) if *f > 0.0 && *f < 1.0 => {
                    c.validation = Some(Validation::Holdout(*f));
                    Ok(())
                }
                _ => data_source(v, fields, base).map(|d| c.validation = Some(Validation::Data(d))),
            },
            "optimizer" => optimizer(v).map(|o| c.optimizer = o),
            "schedule" => schedule(v).map(|sc| c.schedule = sc),
            "warmup" => count(v).map(|n| c.warmup = n),
            "clip_grad_norm" => positive_number(v).map(|n| c.clip_grad_norm = Some(n)),
            "batch" => match &v.kind {
                ExprKind::Name(id) if id.name == "all" => {
                    c.batch = Batch::All;
                    Ok(())
                }
                _ => count(v)
                    .and_then(|n| {
                        if n == 0 {
                            Err(bad(v, "the batch size must be positive", None))
                        } else {
                            Ok(n)
                        }
                    })
                    .map(|n| c.batch = Batch::Size(n as usize)),
            },
            "epochs" => count(v).map(|n| c.length = Length::Epochs(n)),
            "steps" => count(v).map(|n| c.length = Length::Steps(n)),
            "shuffle" => boolean(v).map(|b| c.shuffle = b),
            "seed" => count(v).map(|n| c.seed = n),
            "metrics" => metrics(v).map(|m| c.metrics = m),
            _ => {
                let mut d = Diagnostic::error("E0203", format!("unknown train setting `{key}`"))
                    .primary(s.key.span.clone(), "not a setting");
                d = match did_you_mean(key, KEYS.iter().copied()) {
                    Some(k) => d.help(format!("did you mean `{k}`?")),
                    None => d.note(format!("settings: {}", KEYS.join(", "))),
                };
                Err(d)
            }
        };
        if let Err(d) = result {
            errors.push(d);
        }
    }
    if seen.iter().any(|(k, _)| *k == "epochs") && seen.iter().any(|(k, _)| *k == "steps") {
        let span = seen
            .iter()
            .find(|(k, _)| *k == "steps")
            .map(|(_, s)| s.clone())
            .unwrap_or(0..0);
        errors.push(Diagnostic::error("E0203", "set `epochs` or `steps`, not both").primary(span, "second run length"));
    }
    if c.batch == Batch::All {
        c.shuffle = false;
    }
    if errors.is_empty() {
        Ok(c)
    } else {
        Err(errors)
    }
}

fn bad(e: &ast::Expr, message: impl Into<String>, help: Option<&str>) -> Diagnostic {
    let d = Diagnostic::error("E0200", message).primary(e.span.clone(), "here");
    match help {
        Some(h) => d.help(h),
        None => d,
    }
}

fn number(e: &ast::Expr) -> Result<f64, Diagnostic> {
    match &e.kind {
        ExprKind::Int(v) => Ok(*v as f64),
        ExprKind::Float(v) => Ok(*v),
        ExprKind::Neg(inner) => number(inner).map(|v| -v),
        _ => Err(bad(e, "expected a number", None)),
    }
}

fn positive_number(e: &ast::Expr) -> Result<f64, Diagnostic> {
    let v = number(e)?;
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(bad(e, format!("expected a positive number, got {v}"), None))
    }
}

fn count(e: &ast::Expr) -> Result<u64, Diagnostic> {
    match &e.kind {
        ExprKind::Int(v) if *v >= 0 => Ok(*v as u64),
        _ => Err(bad(e, "expected a whole number of at least 0", None)),
    }
}

fn boolean(e: &ast::Expr) -> Result<bool, Diagnostic> {
    match &e.kind {
        ExprKind::Bool(b) => Ok(*b),
        _ => Err(bad(e, "expected `true` or `false`", None)),
    }
}

fn string(e: &ast::Expr) -> Result<String, Diagnostic> {
    match &e.kind {
        ExprKind::Str(s) => Ok(s.clone()),
        _ => Err(bad(e, "expected a string (a file path in double quotes)", None)),
    }
}

/// A call's positional and named arguments, checked against known names.
struct Call<'a> {
    name: &'a ast::Ident,
    positional: Vec<&'a ast::Expr>,
    named: Vec<(&'a ast::Ident, &'a ast::Expr)>,
}

fn call<'a>(e: &'a ast::Expr, what: &str, choices: &[&str]) -> Result<Call<'a>, Diagnostic> {
    let ExprKind::Call { callee, args } = &e.kind else {
        return Err(bad(e, format!("expected {what}, such as `{}(...)`", choices[0]), None));
    };
    if !choices.contains(&callee.name.as_str()) {
        let d = Diagnostic::error("E0101", format!("unknown {what} `{}`", callee.name))
            .primary(callee.span.clone(), "not known");
        return Err(match did_you_mean(&callee.name, choices.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.note(format!("known: {}", choices.join(", "))),
        });
    }
    let mut c = Call {
        name: callee,
        positional: Vec::new(),
        named: Vec::new(),
    };
    for a in args {
        match &a.name {
            Some(n) => c.named.push((n, &a.value)),
            None => c.positional.push(&a.value),
        }
    }
    Ok(c)
}

impl<'a> Call<'a> {
    /// Named arguments must be among `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), Diagnostic> {
        for (n, _) in &self.named {
            if !allowed.contains(&n.name.as_str()) {
                let d = Diagnostic::error("E0203", format!("`{}` has no parameter `{}`", self.name.name, n.name))
                    .primary(n.span.clone(), "unknown parameter");
                return Err(match did_you_mean(&n.name, allowed.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.note(format!("parameters: {}", allowed.join(", "))),
                });
            }
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&'a ast::Expr> {
        self.named.iter().find(|(n, _)| n.name == name).map(|(_, e)| *e)
    }

    fn number_or(&self, name: &str, default: f64) -> Result<f64, Diagnostic> {
        self.get(name).map_or(Ok(default), number)
    }
}

fn optimizer(e: &ast::Expr) -> Result<Optimizer, Diagnostic> {
    let c = call(e, "optimizer", &["SGD", "Adam", "AdamW"])?;
    let lr = match c.get("lr").or_else(|| c.positional.first().copied()) {
        Some(v) => positive_number(v)?,
        None => {
            return Err(bad(
                e,
                format!("`{}` needs a learning rate", c.name.name),
                Some("write e.g. `Adam(lr: 0.001)`"),
            ))
        }
    };
    match c.name.name.as_str() {
        "SGD" => {
            c.only(&["lr", "momentum", "dampening", "nesterov", "weight_decay"])?;
            let nesterov = c.get("nesterov").map_or(Ok(false), boolean)?;
            let momentum = c.number_or("momentum", 0.0)?;
            let dampening = c.number_or("dampening", 0.0)?;
            if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                return Err(bad(e, "Nesterov momentum requires a momentum and zero dampening", None));
            }
            Ok(Optimizer::Sgd {
                lr,
                momentum,
                dampening,
                nesterov,
                weight_decay: c.number_or("weight_decay", 0.0)?,
            })
        }
        name => {
            c.only(&["lr", "betas", "eps", "weight_decay"])?;
            let betas = match c.get("betas") {
                None => (0.9, 0.999),
                Some(b) => match &b.kind {
                    ExprKind::List(items) if items.len() == 2 => (number(&items[0])?, number(&items[1])?),
                    _ => return Err(bad(b, "betas are a pair, e.g. `[0.9, 0.999]`", None)),
                },
            };
            let decoupled = name == "AdamW";
            Ok(Optimizer::Adam {
                lr,
                betas,
                eps: c.number_or("eps", 1e-8)?,
                weight_decay: c.number_or("weight_decay", if decoupled { 0.01 } else { 0.0 })?,
                decoupled,
            })
        }
    }
}

fn schedule(e: &ast::Expr) -> Result<Schedule, Diagnostic> {
    let c = call(e, "learning-rate schedule", &["constant", "step", "cosine"])?;
    match c.name.name.as_str() {
        "constant" => {
            c.only(&[])?;
            Ok(Schedule::Constant)
        }
        "step" => {
            c.only(&["every", "gamma"])?;
            let every = c.get("every").map_or(Ok(1), count)?.max(1);
            Ok(Schedule::Step {
                every,
                gamma: c.number_or("gamma", 0.1)?,
            })
        }
        _ => {
            c.only(&["min_lr"])?;
            Ok(Schedule::Cosine {
                min_lr: c.number_or("min_lr", 0.0)?,
            })
        }
    }
}

fn metrics(e: &ast::Expr) -> Result<Vec<Metric>, Diagnostic> {
    let ExprKind::List(items) = &e.kind else {
        return Err(bad(e, "expected a list such as `[loss, accuracy]`", None));
    };
    items
        .iter()
        .map(|i| match &i.kind {
            ExprKind::Name(id) if id.name == "loss" => Ok(Metric::Loss),
            ExprKind::Name(id) if id.name == "accuracy" => Ok(Metric::Accuracy),
            _ => Err(bad(i, "unknown metric", Some("metrics are `loss` and `accuracy`"))),
        })
        .collect()
}

fn resolve(base: &Path, path: String) -> std::path::PathBuf {
    let p = Path::new(&path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `idx(image: "...", label: "...")`, `npy(...)`, `cifar10("a.bin", ...)`,
/// `csv("f.csv", label: 0, shape: [1, 28, 28])`, each with optional
/// `mean:`/`std:` for the inputs.
fn data_source(e: &ast::Expr, fields: &Fields, base: &Path) -> Result<DataSpec, Diagnostic> {
    let c = call(e, "data format", &["idx", "npy", "cifar10", "csv"])?;
    let all: Vec<&str> = fields.inputs.iter().chain(fields.targets).map(String::as_str).collect();
    let mut spec = match c.name.name.as_str() {
        kind @ ("idx" | "npy") => {
            let mut files = Vec::new();
            for (n, v) in &c.named {
                if n.name == "mean" || n.name == "std" {
                    continue;
                }
                if !all.contains(&n.name.as_str()) {
                    let d = Diagnostic::error(
                        "E0203",
                        format!("`{}` is neither an input nor a target of the model", n.name),
                    )
                    .primary(n.span.clone(), "unknown field");
                    return Err(match did_you_mean(&n.name, all.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.note(format!("fields: {}", all.join(", "))),
                    });
                }
                files.push((n.name.clone(), resolve(base, string(v)?)));
            }
            if let Some(p) = c.positional.first() {
                return Err(bad(
                    p,
                    "name each file's field",
                    Some("write `idx(image: \"...\", label: \"...\")`"),
                ));
            }
            if kind == "idx" {
                DataSpec::idx(files)
            } else {
                DataSpec::npy(files)
            }
        }
        "cifar10" => {
            c.only(&["mean", "std"])?;
            let files = c
                .positional
                .iter()
                .map(|p| string(p).map(|s| resolve(base, s)))
                .collect::<Result<Vec<_>, _>>()?;
            let (Some(image), Some(label)) = (fields.inputs.first(), fields.targets.first()) else {
                return Err(bad(
                    e,
                    "cifar10 data needs one model input (images) and one target (labels)",
                    None,
                ));
            };
            DataSpec::cifar10(image.clone(), label.clone(), files)
        }
        _ => {
            c.only(&["label", "header", "shape", "mean", "std"])?;
            let Some(path) = c.positional.first() else {
                return Err(bad(e, "csv needs a file path", None));
            };
            let (Some(input), Some(target)) = (fields.inputs.first(), fields.targets.first()) else {
                return Err(bad(e, "csv data needs one model input and one target", None));
            };
            let label = c.get("label").map_or(Ok(0), |l| number(l).map(|v| v as isize))?;
            let mut csv = CsvSpec::new(resolve(base, string(path)?));
            csv.header = match c.get("header") {
                Some(h) => {
                    if boolean(h)? {
                        CsvHeader::Present
                    } else {
                        CsvHeader::Absent
                    }
                }
                None => CsvHeader::Auto,
            };
            let shape = match c.get("shape") {
                Some(s) => match &s.kind {
                    ExprKind::List(items) => Some(
                        items
                            .iter()
                            .map(|i| count(i).map(|v| v as usize))
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    _ => return Err(bad(s, "a shape is a list such as `[1, 28, 28]`", None)),
                },
                None => None,
            };
            csv = csv.field(target.clone(), Columns::One(label), DType::I64);
            csv = match shape {
                Some(s) => csv.field_shaped(input.clone(), Columns::Rest, DType::F32, s),
                None => csv.field(input.clone(), Columns::Rest, DType::F32),
            };
            DataSpec::csv(csv)
        }
    };
    let mean = c.get("mean").map(list_of_numbers).transpose()?;
    let std = c.get("std").map(list_of_numbers).transpose()?;
    match (mean, std) {
        (Some(mean), Some(std)) => {
            for input in fields.inputs {
                spec = spec.normalize(
                    input.clone(),
                    Normalize::MeanStd {
                        mean: mean.clone(),
                        std: std.clone(),
                    },
                );
            }
        }
        (None, None) => {}
        _ => return Err(bad(e, "give both `mean:` and `std:` to normalise", None)),
    }
    Ok(spec)
}

fn list_of_numbers(e: &ast::Expr) -> Result<Vec<f64>, Diagnostic> {
    match &e.kind {
        ExprKind::List(items) => items.iter().map(number).collect(),
        _ => number(e).map(|v| vec![v]),
    }
}
