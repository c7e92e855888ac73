//! Checkpoints: a safetensors file holding every parameter and buffer under
//! its PyTorch name, the optimizer state as `optimizer.<param>.<state>`, and
//! in its metadata the step, epoch, loader position and seed. Written to a
//! temporary file and renamed, so an interrupted write never loses the
//! previous checkpoint.

use crate::data::LoaderState;
use crate::io::{read_safetensors_with_metadata, write_safetensors_with_metadata, IoError};
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub tensors: BTreeMap<String, Tensor>,
    /// Steps taken so far.
    pub step: u64,
    pub loader: LoaderState,
    pub seed: u64,
    pub optimizer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{path}: not a netc checkpoint ({what}); a weights file goes to --init, a checkpoint to --resume")]
    Invalid { path: String, what: String },
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let meta = BTreeMap::from([
            ("netc.step".to_string(), self.step.to_string()),
            ("netc.seed".to_string(), self.seed.to_string()),
            ("netc.optimizer".to_string(), self.optimizer.clone()),
            ("netc.loader".to_string(), hex(&self.loader.to_bytes())),
        ]);
        Ok(write_safetensors_with_metadata(path, &self.tensors, &meta)?)
    }

    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let (tensors, meta) = read_safetensors_with_metadata(path)?;
        let invalid = |what: &str| CheckpointError::Invalid {
            path: path.display().to_string(),
            what: what.to_string(),
        };
        let number = |key: &str| {
            meta.get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| invalid(&format!("no `{key}`")))
        };
        let loader = meta
            .get("netc.loader")
            .and_then(|h| unhex(h))
            .and_then(|b| LoaderState::from_bytes(&b).ok())
            .ok_or_else(|| invalid("no loader state"))?;
        Ok(Checkpoint {
            tensors,
            step: number("netc.step")?,
            seed: number("netc.seed")?,
            optimizer: meta.get("netc.optimizer").cloned().unwrap_or_default(),
            loader,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
