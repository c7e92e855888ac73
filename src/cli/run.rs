//! `netc run model.net`: trains the model its `train` section describes.

use super::common::{cache, device};
use super::load::{load, print_diagnostics, Loaded};
use super::{CliError, CliResult};
use crate::check::Mode;
use crate::data::{self, DataSpec, Dataset, Holdout};
use crate::exec::bind::initial_params;
use crate::exec::{DeviceChoice, Options};
use crate::ops::Op;
use crate::train::checkpoint::Checkpoint;
use crate::train::config::{self, Batch, Length, Metric, TrainConfig, Validation};
use crate::train::session::{EpochReport, Observer, Session, StepReport};
use crate::train::step::{self, StepGraph};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .net file; its `train` section says what to train on and how.
    pub file: PathBuf,
    /// Where to run.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Train for this many epochs (overrides `epochs:`/`steps:`).
    #[arg(long, conflicts_with = "steps")]
    pub epochs: Option<u64>,
    /// Train for this many steps (overrides `epochs:`/`steps:`).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Samples per step (overrides `batch:`).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Training data, overriding `data:`: FORMAT:FILE,... with files taking the
    /// model's inputs then targets in order, e.g. `npy:x.npy,y.npy`.
    #[arg(long)]
    pub data: Option<String>,
    /// Start from these weights (safetensors with PyTorch names).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Write the final weights here (safetensors with PyTorch names).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Continue a run from its checkpoint, exactly.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Write a checkpoint (weights, optimizer state, step, data position) here
    /// after every epoch; `{step}` in the name is replaced by the step count.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Also write the checkpoint every N steps.
    #[arg(long, requires = "checkpoint")]
    pub checkpoint_every: Option<u64>,
    /// Append one JSON object per step and per epoch to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Seed for initialisation, shuffling and dropout (overrides `seed:`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Which model, when the file defines several.
    #[arg(long)]
    pub model: Option<String>,
    /// Do not read or write the compile cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// The model's `train` section as a configuration (`None` without one, unless required).
pub fn train_config(loaded: &Loaded, required: bool) -> Result<Option<TrainConfig>, CliError> {
    let Some(section) = &loaded.model.train else {
        if required {
            return Err(
                CliError::new(format!("model `{}` has no `train` section", loaded.model.name)).hint(
                    "add `train { target label: i64[B]; data: ...; loss: ...; optimizer: ... }`; see docs/language.md",
                ),
            );
        }
        return Ok(None);
    };
    let (inputs, targets) = field_names(loaded);
    let base = Path::new(&loaded.source.name)
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    config::read(
        section,
        &config::Fields {
            inputs: &inputs,
            targets: &targets,
        },
        &base,
    )
    .map(Some)
    .map_err(|diags| {
        print_diagnostics(&loaded.source, &diags);
        CliError::Reported
    })
}

/// The model's data inputs and the train section's targets, in order.
fn field_names(loaded: &Loaded) -> (Vec<String>, Vec<String>) {
    let g = &loaded.model.graph;
    let name = |id| match g.op(id) {
        Op::Input(i) => Some(i.name.clone()),
        _ => None,
    };
    let targets: Vec<String> = loaded.model.targets.iter().filter_map(|&t| name(t)).collect();
    let inputs: Vec<String> = g
        .inputs
        .iter()
        .filter_map(|&i| name(i))
        .filter(|n| !targets.contains(n) && n != crate::check::library::SEED_INPUT)
        .collect();
    (inputs, targets)
}

/// The training step graph of a model loaded in training mode.
pub fn step_graph(loaded: &Loaded, config: Option<&TrainConfig>) -> Result<StepGraph, CliError> {
    let default = TrainConfig::default();
    let config = config.unwrap_or(&default);
    step::build(&loaded.model, Some(&config.optimizer), config.clip_grad_norm).map_err(|e| {
        CliError::new(format!("cannot build the training step: {e}"))
            .hint("the train section needs `loss:`, e.g. `loss: cross_entropy(logits, label)`")
    })
}

fn open_data(spec: &DataSpec) -> Result<Dataset, CliError> {
    data::open(spec).map_err(|e| CliError::new(format!("cannot load the data: {e}")))
}

pub fn run(args: Args) -> CliResult {
    let loaded = load(&args.file, Mode::Train, args.model.as_deref())?;
    let eval_model = load(&args.file, Mode::Eval, args.model.as_deref())?.model;
    let mut cfg = train_config(&loaded, true)?.expect("required");
    if let Some(e) = args.epochs {
        cfg.length = Length::Epochs(e);
    }
    if let Some(s) = args.steps {
        cfg.length = Length::Steps(s);
    }
    if let Some(b) = args.batch {
        if b == 0 {
            return Err(CliError::new("--batch must be positive"));
        }
        cfg.batch = Batch::Size(b);
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(d) = &args.data {
        let (inputs, targets) = field_names(&loaded);
        let names: Vec<&str> = inputs.iter().chain(&targets).map(String::as_str).collect();
        cfg.data = Some(DataSpec::parse_cli(d, &names).map_err(|e| CliError::new(format!("--data: {e}")))?);
    }
    let spec = cfg.data.clone().ok_or_else(|| {
        CliError::new("no training data")
            .hint("add `data: idx(...)` (or npy, cifar10, csv) to the train section, or pass --data FORMAT:FILES")
    })?;
    let mut train_data = open_data(&spec)?;
    let val_data = match &cfg.validation {
        Some(Validation::Data(v)) => Some(open_data(v)?),
        Some(Validation::Holdout(f)) => {
            let (t, v) = train_data
                .holdout(Holdout::Fraction(*f))
                .map_err(|e| CliError::new(e.to_string()))?;
            train_data = t;
            Some(v)
        }
        None => None,
    };
    let batch = match cfg.batch {
        Batch::Size(b) => b,
        Batch::All => train_data.len(),
    };
    if batch > train_data.len() {
        return Err(CliError::new(format!(
            "the batch ({batch}) is larger than the training data ({} samples)",
            train_data.len()
        )));
    }
    let device = device(args.device)?;
    let options = Options {
        cache: cache(args.no_cache),
        target: None,
        source: Some(loaded.source.clone()),
    };
    eprintln!(
        "netc: training `{}` on {} ({} samples{}), batch {batch}, {}",
        loaded.model.name,
        device.describe(),
        train_data.len(),
        val_data
            .as_ref()
            .map(|v| format!(", {} for validation", v.len()))
            .unwrap_or_default(),
        cfg.optimizer.name()
    );
    let compile_started = Instant::now();
    let wants_val = cfg.metrics.iter().any(|m| *m == Metric::Accuracy || *m == Metric::Loss);
    let mut session = Session::new(
        &loaded.model,
        wants_val.then_some(&eval_model),
        cfg.clone(),
        batch,
        device,
        options,
    )
    .map_err(|e| CliError::new(format!("cannot compile the training step: {e}")))?;
    eprintln!(
        "netc: compiled the training step in {:.1} s",
        compile_started.elapsed().as_secs_f64()
    );
    let resume = match &args.resume {
        Some(p) => Some(Checkpoint::load(p).map_err(|e| CliError::new(e.to_string()))?),
        None => None,
    };
    if resume.is_none() {
        let weights = match &args.init {
            Some(p) => crate::io::read_safetensors(p).map_err(|e| CliError::new(e.to_string()))?,
            None => initial_params(&loaded.model.graph, cfg.seed),
        };
        session
            .load(&weights)
            .map_err(|e| CliError::new(format!("the weights do not fit the model:\n  {e}")))?;
    }
    let mut log = match &args.log {
        Some(p) => {
            Some(std::fs::File::create(p).map_err(|e| CliError::new(format!("cannot write `{}`: {e}", p.display())))?)
        }
        None => None,
    };
    let total_epochs = match cfg.length {
        Length::Epochs(e) => Some(e),
        Length::Steps(_) => None,
    };
    let mut reporter = Reporter::new(
        log.as_mut(),
        total_epochs,
        session_steps_per_epoch(train_data.len(), batch),
    );
    let started = Instant::now();
    let last = session
        .fit(
            &train_data,
            val_data.as_ref(),
            resume.as_ref(),
            args.checkpoint.as_ref().map(|p| (p, args.checkpoint_every)),
            &mut reporter,
        )
        .map_err(|e| CliError::new(format!("training failed: {e}")))?;
    reporter.finish();
    if let Some(report) = session.profile_report() {
        eprintln!("{report}");
    }
    if let Some(path) = &args.save {
        let weights = session.tensors(false).map_err(|e| CliError::new(e.to_string()))?;
        crate::io::write_safetensors(path, &weights).map_err(|e| CliError::new(e.to_string()))?;
        eprintln!("netc: saved the weights to {}", path.display());
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut summary = format!("finished: {} steps in {:.1} s", session.steps_done, seconds);
    if let Some(r) = &last {
        if let Some(a) = r.val_accuracy {
            summary += &format!("; validation accuracy {:.2}%", a * 100.0);
        }
        if let Some(l) = r.val_loss {
            summary += &format!(", validation loss {l:.4}");
        }
        summary += &format!("; last epoch {:.0} samples/s", r.samples_per_s);
    }
    println!("{summary}");
    Ok(())
}

fn session_steps_per_epoch(samples: usize, batch: usize) -> u64 {
    (samples / batch.max(1)) as u64
}

/// Progress on a terminal (a bar), plain lines otherwise, and the JSON log.
struct Reporter<'a> {
    log: Option<&'a mut std::fs::File>,
    bar: Option<ProgressBar>,
    epochs: Option<u64>,
    per_epoch: u64,
    last_line: Instant,
}

impl<'a> Reporter<'a> {
    fn new(log: Option<&'a mut std::fs::File>, epochs: Option<u64>, per_epoch: u64) -> Reporter<'a> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(per_epoch);
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        Reporter {
            log,
            bar,
            epochs,
            per_epoch,
            last_line: Instant::now(),
        }
    }

    fn write_log(&mut self, value: serde_json::Value) {
        if let Some(f) = self.log.as_mut() {
            let _ = writeln!(f, "{value}");
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    fn epoch_label(&self, epoch: u64) -> String {
        match self.epochs {
            Some(n) => format!("epoch {}/{n}", epoch + 1),
            None => format!("epoch {}", epoch + 1),
        }
    }
}

impl Observer for Reporter<'_> {
    fn step(&mut self, r: &StepReport) {
        self.write_log(serde_json::json!({"step": r.step, "epoch": r.epoch + 1, "loss": r.loss, "lr": r.lr}));
        let label = self.epoch_label(r.epoch);
        let msg = format!("loss {:.4} | {:.0} samples/s", r.loss, r.samples_per_s);
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(label);
                bar.set_position(((r.step - 1) % self.per_epoch.max(1)) + 1);
                bar.set_message(msg);
            }
            None if self.last_line.elapsed().as_secs_f64() >= 5.0 => {
                eprintln!("{label} step {}: {msg}", r.step);
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn epoch(&mut self, r: &EpochReport) {
        self.write_log(serde_json::json!({
            "epoch": r.epoch + 1,
            "steps": r.steps,
            "train_loss": r.train_loss,
            "train_accuracy": r.train_accuracy,
            "val_loss": r.val_loss,
            "val_accuracy": r.val_accuracy,
            "seconds": r.seconds,
            "samples_per_s": r.samples_per_s,
        }));
        let mut line = format!("{}: train loss {:.4}", self.epoch_label(r.epoch), r.train_loss);
        if let Some(a) = r.train_accuracy {
            line += &format!(", accuracy {:.2}%", a * 100.0);
        }
        if let Some(l) = r.val_loss {
            line += &format!(" | validation loss {l:.4}");
        }
        if let Some(a) = r.val_accuracy {
            line += &format!(", accuracy {:.2}%", a * 100.0);
        }
        line += &format!(" | {:.1} s, {:.0} samples/s", r.seconds, r.samples_per_s);
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}
