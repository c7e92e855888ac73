//! Batches over a [`Dataset`], epoch by epoch, optionally shuffled and prefetched.
//!
//! The order of epoch `e` is a pure function of `(seed, e)`: a Fisher–Yates
//! shuffle driven by an [`Rng`] seeded from both. So the whole position of a
//! loader is `(seed, epoch, step)`, which [`LoaderState`] records; restoring it
//! replays exactly the batches an uninterrupted run would have produced, and the
//! prefetch thread, which runs ahead on its own copy of the position, produces
//! the same batches as the synchronous path.

use super::{DataError, Dataset};
use crate::tensor::Tensor;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch: usize,
    pub shuffle: bool,
    /// Leave out the final partial batch of each epoch.
    pub drop_last: bool,
    pub seed: u64,
    /// Batches assembled ahead by a background thread; 0 assembles on demand.
    pub prefetch: usize,
}

impl LoaderConfig {
    /// Shuffled, and only full batches: the kernels are compiled for one batch size.
    pub fn train(batch: usize, seed: u64) -> LoaderConfig {
        LoaderConfig {
            batch,
            shuffle: true,
            drop_last: true,
            seed,
            prefetch: 4,
        }
    }

    /// In order, every sample seen once: the last batch may be smaller.
    pub fn eval(batch: usize) -> LoaderConfig {
        LoaderConfig {
            batch,
            shuffle: false,
            drop_last: false,
            seed: 0,
            prefetch: 2,
        }
    }

    /// The whole set as a single batch, in order. Nothing to overlap, so no thread.
    pub fn whole(dataset: &Dataset) -> LoaderConfig {
        LoaderConfig {
            batch: dataset.len(),
            shuffle: false,
            drop_last: false,
            seed: 0,
            prefetch: 0,
        }
    }
}

/// Where a loader is, and enough of its configuration to refuse a state saved
/// from a loader that would produce different batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderState {
    pub seed: u64,
    pub epoch: u64,
    /// Batches already taken in this epoch.
    pub step: u64,
    pub len: u64,
    pub batch: u64,
    pub shuffle: bool,
    pub drop_last: bool,
}

const STATE_TAG: &[u8; 8] = b"NETCLDR1";

impl LoaderState {
    /// `[seed, epoch, step, len, batch, flags]`, flags bit 0 shuffle, bit 1 drop_last.
    pub fn to_u64s(&self) -> [u64; 6] {
        let flags = u64::from(self.shuffle) | (u64::from(self.drop_last) << 1);
        [self.seed, self.epoch, self.step, self.len, self.batch, flags]
    }

    pub fn from_u64s(words: [u64; 6]) -> Result<LoaderState, DataError> {
        let [seed, epoch, step, len, batch, flags] = words;
        if flags > 3 {
            return Err(DataError::State(format!("unknown flag bits {flags:#x}")));
        }
        Ok(LoaderState {
            seed,
            epoch,
            step,
            len,
            batch,
            shuffle: flags & 1 != 0,
            drop_last: flags & 2 != 0,
        })
    }

    /// A tag, then the six words of [`LoaderState::to_u64s`], little-endian: 56 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = STATE_TAG.to_vec();
        for w in self.to_u64s() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<LoaderState, DataError> {
        let body = bytes
            .strip_prefix(STATE_TAG.as_slice())
            .ok_or_else(|| DataError::State("not a saved loader state (bad tag)".to_string()))?;
        if body.len() != 48 {
            return Err(DataError::State(format!("expected 56 bytes, found {}", bytes.len())));
        }
        let mut words = [0u64; 6];
        for (w, chunk) in words.iter_mut().zip(body.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        LoaderState::from_u64s(words)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub epoch: u64,
    /// Index of this batch within its epoch.
    pub step: u64,
    /// One tensor per dataset field, in the dataset's field order; the first
    /// axis is the batch.
    pub fields: Vec<Tensor>,
}

/// What both the worker thread and the synchronous path compute from.
#[derive(Clone)]
struct Plan {
    dataset: Arc<Dataset>,
    batch: usize,
    shuffle: bool,
    seed: u64,
    batches_per_epoch: u64,
}

impl Plan {
    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.shuffle {
            let mut rng = Rng::stream(self.seed, epoch);
            for i in (1..order.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    fn batch(&self, order: &[usize], epoch: u64, step: u64) -> Batch {
        let start = step as usize * self.batch;
        let end = (start + self.batch).min(order.len());
        Batch {
            epoch,
            step,
            fields: self.dataset.gather(&order[start..end]),
        }
    }
}

enum Item {
    Batch(Batch),
    EpochEnd,
}

pub struct Loader {
    plan: Plan,
    config: LoaderConfig,
    epoch: u64,
    step: u64,
    /// The synchronous path's order for `epoch`, kept so it is shuffled once per epoch.
    order: Option<(u64, Vec<usize>)>,
    prefetch: Option<Prefetcher>,
}

impl Loader {
    pub fn new(dataset: impl Into<Arc<Dataset>>, config: LoaderConfig) -> Result<Loader, DataError> {
        let dataset = dataset.into();
        let len = dataset.len();
        if config.batch == 0 {
            return Err(DataError::Spec("a batch size of 0".to_string()));
        }
        let full = len / config.batch;
        let batches_per_epoch = if config.drop_last || len % config.batch == 0 {
            full
        } else {
            full + 1
        };
        if batches_per_epoch == 0 {
            return Err(DataError::Spec(format!(
                "the dataset has {len} samples, fewer than one batch of {}",
                config.batch
            )));
        }
        let plan = Plan {
            dataset,
            batch: config.batch,
            shuffle: config.shuffle,
            seed: config.seed,
            batches_per_epoch: batches_per_epoch as u64,
        };
        let mut loader = Loader {
            plan,
            config,
            epoch: 0,
            step: 0,
            order: None,
            prefetch: None,
        };
        loader.start_prefetch()?;
        Ok(loader)
    }

    fn start_prefetch(&mut self) -> Result<(), DataError> {
        self.prefetch = None;
        if self.config.prefetch > 0 {
            self.prefetch = Some(Prefetcher::start(
                self.plan.clone(),
                self.epoch,
                self.step,
                self.config.prefetch,
            )?);
        }
        Ok(())
    }

    /// The next batch of the current epoch, or `None` once the epoch is over;
    /// the call after a `None` begins the next epoch.
    pub fn next_batch(&mut self) -> Option<Batch> {
        let item = match self.prefetch.as_mut().map(Prefetcher::recv) {
            Some(Some(item)) => item,
            Some(None) => {
                // The worker only stops early by panicking; surface that here.
                if let Some(p) = self.prefetch.take() {
                    p.propagate_panic();
                }
                self.sync_item()
            }
            None => self.sync_item(),
        };
        match item {
            Item::Batch(b) => {
                self.step += 1;
                Some(b)
            }
            Item::EpochEnd => {
                self.epoch += 1;
                self.step = 0;
                None
            }
        }
    }

    fn sync_item(&mut self) -> Item {
        if self.step >= self.plan.batches_per_epoch {
            return Item::EpochEnd;
        }
        let epoch = self.epoch;
        if self.order.as_ref().map(|(e, _)| *e) != Some(epoch) {
            self.order = None;
        }
        let plan = &self.plan;
        let (_, order) = self.order.get_or_insert_with(|| (epoch, plan.order(epoch)));
        Item::Batch(plan.batch(order, epoch, self.step))
    }

    pub fn state(&self) -> LoaderState {
        LoaderState {
            seed: self.plan.seed,
            epoch: self.epoch,
            step: self.step,
            len: self.plan.dataset.len() as u64,
            batch: self.config.batch as u64,
            shuffle: self.config.shuffle,
            drop_last: self.config.drop_last,
        }
    }

    /// Continues from a saved state, seed included. Refuses a state whose dataset
    /// length, batch size or flags differ, since those change every batch.
    pub fn restore(&mut self, state: LoaderState) -> Result<(), DataError> {
        let mine = self.state();
        let differs = |what: &str, theirs: String, ours: String| {
            DataError::State(format!("saved with {what} {theirs}, but this loader has {ours}"))
        };
        if state.len != mine.len {
            return Err(differs("a dataset of", state.len.to_string(), mine.len.to_string()));
        }
        if state.batch != mine.batch {
            return Err(differs("batch", state.batch.to_string(), mine.batch.to_string()));
        }
        if (state.shuffle, state.drop_last) != (mine.shuffle, mine.drop_last) {
            return Err(differs(
                "(shuffle, drop_last)",
                format!("({}, {})", state.shuffle, state.drop_last),
                format!("({}, {})", mine.shuffle, mine.drop_last),
            ));
        }
        if state.step > self.plan.batches_per_epoch {
            return Err(DataError::State(format!(
                "step {} is past the {} batches of an epoch",
                state.step, self.plan.batches_per_epoch
            )));
        }
        self.plan.seed = state.seed;
        self.config.seed = state.seed;
        self.epoch = state.epoch;
        self.step = state.step;
        self.order = None;
        self.start_prefetch()
    }

    pub fn batches_per_epoch(&self) -> u64 {
        self.plan.batches_per_epoch
    }

    /// The epoch the next batch belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.plan.dataset
    }
}

struct Prefetcher {
    // Both are options so that `Drop` can close the channel before joining:
    // the closed channel is what wakes and stops a worker blocked on a full one.
    rx: Option<Receiver<Item>>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetcher {
    fn start(plan: Plan, epoch: u64, step: u64, depth: usize) -> Result<Prefetcher, DataError> {
        let (tx, rx) = sync_channel(depth);
        let handle = std::thread::Builder::new()
            .name("netc-loader".to_string())
            .spawn(move || produce(plan, epoch, step, tx))
            .map_err(|e| DataError::Spec(format!("cannot start the prefetch thread: {e}")))?;
        Ok(Prefetcher {
            rx: Some(rx),
            handle: Some(handle),
        })
    }

    fn recv(&mut self) -> Option<Item> {
        self.rx.as_ref().and_then(|rx| rx.recv().ok())
    }

    fn propagate_panic(mut self) {
        self.rx = None;
        if let Some(handle) = self.handle.take() {
            if let Err(payload) = handle.join() {
                std::panic::resume_unwind(payload);
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.rx = None;
        if let Some(handle) = self.handle.take() {
            // A worker panic is reported by `next_batch`; when dropping, the
            // batches it would have made are unwanted anyway.
            let _ = handle.join();
        }
    }
}

/// The worker: the same sequence the synchronous path makes, until the
/// receiver goes away.
fn produce(plan: Plan, mut epoch: u64, mut step: u64, tx: SyncSender<Item>) {
    loop {
        let order = plan.order(epoch);
        while step < plan.batches_per_epoch {
            if tx.send(Item::Batch(plan.batch(&order, epoch, step))).is_err() {
                return;
            }
            step += 1;
        }
        if tx.send(Item::EpochEnd).is_err() {
            return;
        }
        epoch += 1;
        step = 0;
    }
}
