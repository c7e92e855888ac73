//! A training session: the step graph compiled for one batch size, the
//! evaluation graph for validation, and the loop that feeds them batches,
//! applies the learning-rate schedule and writes checkpoints.

use super::checkpoint::{Checkpoint, CheckpointError};
use super::config::{Batch as BatchSize, Length, TrainConfig};
use super::schedule::learning_rate;
use super::step::{self, correct_count, StepError, StepGraph};
use crate::check::Model;
use crate::data::{DataError, Dataset, Loader, LoaderConfig};
use crate::exec::bind::check_weights;
use crate::exec::{Device, ExecError, Executable, Options};
use crate::ir::{Graph, NodeId};
use crate::ops::{Op, OpError};
use crate::rng::mix;
use crate::tensor::{DType, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Invalid(String),
}

impl From<OpError> for TrainError {
    fn from(e: OpError) -> TrainError {
        TrainError::Invalid(e.to_string())
    }
}

/// One step's results.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// 1-based count of steps taken.
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub lr: f64,
    pub samples_per_s: f64,
}

/// One epoch's summary.
#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: u64,
    pub steps: u64,
    pub train_loss: f64,
    pub train_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    pub samples_per_s: f64,
}

/// Where reports go (progress bar, log file).
pub trait Observer {
    fn step(&mut self, report: &StepReport);
    fn epoch(&mut self, report: &EpochReport);
}

/// The evaluation graph: inference-form forward pass, loss and correct count.
struct EvalGraph {
    graph: Graph,
    loss: NodeId,
    correct: Option<NodeId>,
    compiled: HashMap<usize, Executable>,
}

pub struct Session {
    pub config: TrainConfig,
    /// The model's own graph: what weight files are checked against.
    model_graph: Graph,
    step: StepGraph,
    exe: Executable,
    batch: usize,
    eval: Option<EvalGraph>,
    device: Device,
    options: Options,
    /// Steps taken so far.
    pub steps_done: u64,
}

/// Named leaves of a graph: parameters, buffers and optimizer state.
fn named_params(g: &Graph) -> Vec<(String, NodeId, bool)> {
    g.params()
        .into_iter()
        .filter_map(|id| match g.op(id) {
            Op::Param(p) => Some((p.name.clone(), id, p.trainable)),
            _ => None,
        })
        .collect()
}

fn is_optimizer_state(name: &str) -> bool {
    name.starts_with("optimizer.")
}

impl Session {
    /// Compiles the training step of `train_model` (checked in training mode)
    /// for `batch` samples, and prepares validation with `eval_model`.
    pub fn new(
        train_model: &Model,
        eval_model: Option<&Model>,
        config: TrainConfig,
        batch: usize,
        device: Device,
        options: Options,
    ) -> Result<Session, TrainError> {
        let step = step::build(train_model, Some(&config.optimizer), config.clip_grad_norm)?;
        let sizes = HashMap::from([("B".to_string(), batch as i64)]);
        let graph = step.graph.specialize(&sizes).map_err(TrainError::Invalid)?;
        let exe = Executable::new(graph, &step.required(), &device, &options)?;
        let eval = eval_model.map(eval_graph).transpose()?;
        let model_graph = train_model.graph.clone();
        let mut session = Session {
            config,
            model_graph,
            step,
            exe,
            batch,
            eval,
            device,
            options,
            steps_done: 0,
        };
        session.zero_optimizer_state()?;
        Ok(session)
    }

    fn zero_optimizer_state(&mut self) -> Result<(), TrainError> {
        for (name, id, _) in named_params(&self.exe.graph) {
            if is_optimizer_state(&name) {
                let dims = self.exe.graph.ty(id).dims().unwrap_or_default();
                self.exe.write(id, &Tensor::zeros(DType::F32, dims))?;
            }
        }
        Ok(())
    }

    /// Parameters and buffers by name (what `--init` and `--save` carry).
    /// Optimizer state in `tensors` is loaded too, when present.
    pub fn load(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<(), TrainError> {
        let model_only: BTreeMap<String, Tensor> = tensors
            .iter()
            .filter(|(k, _)| !is_optimizer_state(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        check_weights(&self.model_graph, &model_only, true).map_err(|p| TrainError::Invalid(p.join("\n  ")))?;
        for (name, id, _) in named_params(&self.exe.graph) {
            if let Some(t) = tensors.get(&name) {
                self.exe.write(id, t)?;
            }
        }
        Ok(())
    }

    /// Every parameter, buffer and (with `optimizer`) optimizer state, by name.
    pub fn tensors(&self, optimizer: bool) -> Result<BTreeMap<String, Tensor>, TrainError> {
        let mut out = BTreeMap::new();
        for (name, id, _) in named_params(&self.exe.graph) {
            if optimizer || !is_optimizer_state(&name) {
                out.insert(name, self.exe.read(id)?);
            }
        }
        Ok(out)
    }

    /// Writes a batch's fields into the step's inputs and runs one step.
    pub fn step(
        &mut self,
        fields: &[(String, Tensor)],
        epoch: u64,
        total_steps: u64,
    ) -> Result<(f64, Option<f64>), TrainError> {
        let g = &self.exe.graph;
        let mut writes = Vec::new();
        for &id in &g.inputs {
            let Op::Input(input) = g.op(id) else { continue };
            if !self.exe.plan.slot_of.contains_key(&id) {
                continue;
            }
            if input.name == crate::check::library::SEED_INPUT {
                let seed = mix(self.config.seed ^ mix(self.steps_done)) as i64;
                writes.push((id, Tensor::i64(vec![], vec![seed])));
            } else if let Some(k) = super::optim::SCALARS.iter().position(|s| *s == input.name) {
                let lr = self.current_lr(epoch, total_steps);
                let v = self.config.optimizer.scalars(self.steps_done + 1, lr)[k];
                writes.push((id, Tensor::f32(vec![], vec![v as f32])));
            } else {
                let t = fields
                    .iter()
                    .find(|(n, _)| *n == input.name)
                    .map(|(_, t)| t.clone())
                    .ok_or_else(|| TrainError::Invalid(format!("the data has no field `{}`", input.name)))?;
                writes.push((id, t));
            }
        }
        for (id, t) in writes {
            self.exe.write(id, &t)?;
        }
        self.exe.run()?;
        let loss = self.exe.read(self.step.loss)?.to_f64_vec()[0];
        let correct = self
            .step
            .correct
            .map(|c| self.exe.read(c).map(|t| t.to_f64_vec()[0]))
            .transpose()?;
        for &(leaf, new) in &self.step.replaces {
            self.exe.swap(leaf, new)?;
        }
        self.steps_done += 1;
        Ok((loss, correct))
    }

    /// The learning rate of the next step.
    pub fn current_lr(&self, epoch: u64, total_steps: u64) -> f64 {
        learning_rate(
            self.config.optimizer.lr(),
            &self.config.schedule,
            self.config.warmup,
            self.steps_done,
            epoch,
            total_steps,
        )
    }

    /// Mean loss and accuracy over a dataset, in inference form, with the
    /// current parameters. Batches of the training batch size; the last,
    /// smaller batch gets its own (cached) compilation.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<(f64, Option<f64>), TrainError> {
        let weights = self.tensors(false)?;
        let Some(eval) = self.eval.as_mut() else {
            return Err(TrainError::Invalid("no evaluation graph".into()));
        };
        let mut loader = Loader::new(data.clone(), LoaderConfig::eval(self.batch.min(data.len())))?;
        let names: Vec<String> = data.names().iter().map(|s| s.to_string()).collect();
        let (mut loss_sum, mut correct_sum, mut seen) = (0.0, 0.0, 0usize);
        while let Some(b) = loader.next_batch() {
            let n = b.fields.first().map_or(0, |t| t.shape.first().copied().unwrap_or(0));
            if !eval.compiled.contains_key(&n) {
                let g = eval
                    .graph
                    .specialize(&HashMap::from([("B".to_string(), n as i64)]))
                    .map_err(TrainError::Invalid)?;
                let required: Vec<NodeId> = std::iter::once(eval.loss).chain(eval.correct).collect();
                let exe = Executable::new(g, &required, &self.device, &self.options)?;
                eval.compiled.insert(n, exe);
            }
            let exe = eval.compiled.get_mut(&n).expect("compiled above");
            // Weights change between evaluations: write them for every batch,
            // not once when the batch size is first compiled.
            for (name, id, _) in named_params(&exe.graph) {
                if exe.plan.slot_of.contains_key(&id) {
                    if let Some(t) = weights.get(&name) {
                        exe.write(id, t)?;
                    }
                }
            }
            for (name, t) in names.iter().zip(&b.fields) {
                if let Some(id) = exe.graph.input_named(name) {
                    if exe.plan.slot_of.contains_key(&id) {
                        exe.write(id, t)?;
                    }
                }
            }
            exe.run()?;
            loss_sum += exe.read(eval.loss)?.to_f64_vec()[0] * n as f64;
            if let Some(c) = eval.correct {
                correct_sum += exe.read(c)?.to_f64_vec()[0];
            }
            seen += n;
        }
        let seen = seen.max(1) as f64;
        Ok((loss_sum / seen, eval.correct.map(|_| correct_sum / seen)))
    }

    /// Trains on `data` for the configured length, validating on `val` after
    /// every epoch. `resume` continues a checkpoint; `checkpoint` is written
    /// after every epoch (and every `checkpoint_every` steps).
    pub fn fit(
        &mut self,
        data: &Dataset,
        val: Option<&Dataset>,
        resume: Option<&Checkpoint>,
        checkpoint: Option<(&PathBuf, Option<u64>)>,
        observer: &mut dyn Observer,
    ) -> Result<Option<EpochReport>, TrainError> {
        let loader_config = match self.config.batch {
            BatchSize::All => LoaderConfig::whole(data),
            BatchSize::Size(b) => LoaderConfig {
                shuffle: self.config.shuffle,
                ..LoaderConfig::train(b, self.config.seed)
            },
        };
        let mut loader = Loader::new(data.clone(), loader_config)?;
        if loader.batches_per_epoch() == 0 {
            return Err(TrainError::Invalid(format!(
                "the training data has {} samples, fewer than one batch of {}",
                data.len(),
                self.batch
            )));
        }
        if let Some(c) = resume {
            self.load(&c.tensors)?;
            loader.restore(c.loader)?;
            self.steps_done = c.step;
        }
        let per_epoch = loader.batches_per_epoch();
        let total = match self.config.length {
            Length::Epochs(e) => e * per_epoch,
            Length::Steps(s) => s,
        };
        let names: Vec<String> = data.names().iter().map(|s| s.to_string()).collect();
        let mut last = None;
        while self.steps_done < total {
            let epoch = loader.epoch();
            let started = Instant::now();
            let (mut loss_sum, mut correct_sum, mut samples, mut steps) = (0.0, 0.0, 0usize, 0u64);
            let mut has_accuracy = false;
            while self.steps_done < total {
                let Some(batch) = loader.next_batch() else { break };
                let t0 = Instant::now();
                let fields: Vec<(String, Tensor)> = names.iter().cloned().zip(batch.fields).collect();
                let n = fields.first().map_or(0, |(_, t)| t.shape.first().copied().unwrap_or(0));
                let lr = self.current_lr(epoch, total);
                let (loss, correct) = self.step(&fields, epoch, total)?;
                if !loss.is_finite() {
                    return Err(TrainError::Invalid(format!(
                        "the loss became {loss} at step {}; lower the learning rate or clip gradients (`clip_grad_norm:`)",
                        self.steps_done
                    )));
                }
                loss_sum += loss;
                if let Some(c) = correct {
                    correct_sum += c;
                    has_accuracy = true;
                }
                samples += n;
                steps += 1;
                let dt = t0.elapsed().as_secs_f64().max(1e-9);
                observer.step(&StepReport {
                    step: self.steps_done,
                    epoch,
                    loss,
                    lr,
                    samples_per_s: n as f64 / dt,
                });
                if let Some((path, Some(every))) = checkpoint {
                    if self.steps_done % every == 0 {
                        self.save_checkpoint(path, &loader)?;
                    }
                }
            }
            // An epoch that ended exactly at the run's end still counts as done.
            if self.steps_done >= total && loader.epoch() == epoch && loader.state().step == per_epoch {
                let _ = loader.next_batch();
            }
            let seconds = started.elapsed().as_secs_f64();
            let (val_loss, val_accuracy) = match val {
                Some(v) if self.eval.is_some() => {
                    let (l, a) = self.evaluate(v)?;
                    (Some(l), a)
                }
                _ => (None, None),
            };
            let report = EpochReport {
                epoch,
                steps,
                train_loss: loss_sum / steps.max(1) as f64,
                train_accuracy: has_accuracy.then(|| correct_sum / samples.max(1) as f64),
                val_loss,
                val_accuracy,
                seconds,
                samples_per_s: samples as f64 / seconds.max(1e-9),
            };
            observer.epoch(&report);
            if let Some((path, _)) = checkpoint {
                self.save_checkpoint(path, &loader)?;
            }
            last = Some(report);
        }
        Ok(last)
    }

    /// Writes a checkpoint; `{step}` in the file name becomes the step count,
    /// so a run can keep every checkpoint instead of the latest.
    pub fn save_checkpoint(&self, path: &std::path::Path, loader: &Loader) -> Result<(), TrainError> {
        let path = PathBuf::from(path.to_string_lossy().replace("{step}", &self.steps_done.to_string()));
        let c = Checkpoint {
            tensors: self.tensors(true)?,
            step: self.steps_done,
            loader: loader.state(),
            seed: self.config.seed,
            optimizer: self.config.optimizer.name().to_string(),
        };
        Ok(c.save(&path)?)
    }

    /// Where the step's time went, when `NETC_PROFILE` is set.
    pub fn profile_report(&self) -> Option<String> {
        self.exe.profile_report(15)
    }

    /// Samples per step.
    pub fn batch_size(&self) -> usize {
        self.batch
    }
}

fn eval_graph(model: &Model) -> Result<EvalGraph, TrainError> {
    let mut graph = model.graph.clone();
    let loss = model.loss.ok_or(StepError::NoLoss)?;
    let correct = model
        .classification
        .map(|(s, t)| correct_count(&mut graph, s, t))
        .transpose()?;
    Ok(EvalGraph {
        graph,
        loss,
        correct,
        compiled: HashMap::new(),
    })
}
