//! Readers for the binary dataset formats: IDX (MNIST and friends), CIFAR-10
//! binary batches and `.npy` sets. Each returns fields that still remember which
//! files their samples came from, so later checks can name the file.

use super::{DataError, Field};
use crate::tensor::{Data, Tensor};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A loaded field and, in order, the files its samples came from with their counts.
pub(crate) struct Loaded {
    pub field: Field,
    pub parts: Vec<(PathBuf, usize)>,
}

impl Loaded {
    fn single(name: &str, tensor: Tensor, path: &Path) -> Loaded {
        let n = tensor.shape.first().copied().unwrap_or(0);
        Loaded {
            field: Field {
                name: name.to_string(),
                tensor,
            },
            parts: vec![(path.to_path_buf(), n)],
        }
    }

    /// The file holding sample `index`, and the sample's index within it.
    pub fn locate(&self, mut index: usize) -> (&Path, usize) {
        for (path, n) in &self.parts {
            if index < *n {
                return (path, index);
            }
            index -= n;
        }
        // Only reachable with an index past the end; name the last file.
        match self.parts.last() {
            Some((path, _)) => (path, index),
            None => (Path::new("?"), index),
        }
    }

    /// The file(s) behind this field, for messages.
    pub fn describe(&self) -> String {
        match self.parts.as_slice() {
            [(path, _)] => path.display().to_string(),
            parts => format!("{} files", parts.len()),
        }
    }
}

pub(crate) fn format_error(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The file's bytes, gunzipped if it starts with the gzip magic, whatever its
/// name says: people rename files, and gzip streams cannot be seeked anyway.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| format_error(path, format!("gzip data is corrupt or truncated: {e}")))?;
    Ok(out)
}

fn show_bytes(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
    shown.join(" ")
}

/// Pixel bytes to f32 in [0, 1]. `b / 255` in f32, which is what torchvision's
/// `ToTensor` computes, so the values match it bit for bit.
fn unit_floats(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| f32::from(b) / 255.0).collect()
}

pub(crate) fn read_idx(name: &str, path: &Path) -> Result<Loaded, DataError> {
    let bytes = read_maybe_gz(path)?;
    let err = |reason: String| format_error(path, reason);
    let Some(&[z0, z1, code, ndim]) = bytes.get(..4) else {
        return Err(err(format!(
            "truncated: expected at least 4 bytes of IDX header, found {}",
            bytes.len()
        )));
    };
    if z0 != 0 || z1 != 0 || ndim == 0 {
        return Err(err(format!(
            "not an IDX file: it starts with {}, an IDX file starts with 00 00, a type byte and the number of dimensions",
            show_bytes(&bytes)
        )));
    }
    if code != 0x08 {
        return Err(err(format!(
            "IDX element type 0x{code:02x} is not supported (only unsigned bytes, 0x08, as in MNIST)"
        )));
    }
    let ndim = usize::from(ndim);
    let dims_end = 4 + 4 * ndim;
    let dims_bytes = bytes.get(4..dims_end).ok_or_else(|| {
        err(format!(
            "truncated: expected {} bytes of IDX header for {ndim} dimensions, found {}",
            dims_end,
            bytes.len()
        ))
    })?;
    let dims: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w.copy_from_slice(c);
            u32::from_be_bytes(w) as usize
        })
        .collect();
    let count = crate::io::element_count(&dims).ok_or_else(|| err(format!("dimensions {dims:?} are too large")))?;
    let data = &bytes[dims_end..];
    if data.len() != count {
        let what = if data.len() < count { "truncated" } else { "too long" };
        return Err(err(format!(
            "{what}: the header's dimensions {dims:?} need {count} bytes of data, found {}",
            data.len()
        )));
    }
    let tensor = match dims.as_slice() {
        [n] => Tensor {
            shape: vec![*n],
            data: Data::I64(data.iter().map(|&b| i64::from(b)).collect()),
        },
        [n, h, w] => Tensor {
            shape: vec![*n, 1, *h, *w],
            data: Data::F32(unit_floats(data)),
        },
        _ => Tensor {
            shape: dims,
            data: Data::F32(unit_floats(data)),
        },
    };
    Ok(Loaded::single(name, tensor, path))
}

const CIFAR_PIXELS: usize = 3 * 32 * 32;
const CIFAR_RECORD: usize = 1 + CIFAR_PIXELS;

/// CIFAR-10 binary batches: records of one label byte then 3072 pixel bytes,
/// 1024 red, 1024 green, 1024 blue, each row-major, which is already `[3, 32, 32]`.
pub(crate) fn read_cifar10(image: &str, label: &str, files: &[PathBuf]) -> Result<Vec<Loaded>, DataError> {
    if files.is_empty() {
        return Err(DataError::Spec("cifar10: no files given".to_string()));
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut parts = Vec::new();
    for path in files {
        let bytes = read_maybe_gz(path)?;
        let err = |reason: String| format_error(path, reason);
        if bytes.get(257..262) == Some(b"ustar") {
            return Err(err(
                "this is a tar archive; extract it (tar xzf) and give the data_batch_*.bin files inside".to_string(),
            ));
        }
        if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
            return Err(err(format!(
                "{} bytes is not a whole number of CIFAR-10 records ({CIFAR_RECORD} bytes each: 1 label byte, {CIFAR_PIXELS} pixel bytes); truncated, or not a CIFAR-10 binary batch",
                bytes.len()
            )));
        }
        let n = bytes.len() / CIFAR_RECORD;
        pixels.reserve(n * CIFAR_PIXELS);
        for (i, record) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
            if record[0] > 9 {
                return Err(err(format!(
                    "record {i}: label byte {} is not a CIFAR-10 class (0-9); a CIFAR-100 file has two label bytes per record",
                    record[0]
                )));
            }
            labels.push(i64::from(record[0]));
            pixels.extend(record[1..].iter().map(|&b| f32::from(b) / 255.0));
        }
        parts.push((path.clone(), n));
    }
    let n = labels.len();
    Ok(vec![
        Loaded {
            field: Field {
                name: image.to_string(),
                tensor: Tensor {
                    shape: vec![n, 3, 32, 32],
                    data: Data::F32(pixels),
                },
            },
            parts: parts.clone(),
        },
        Loaded {
            field: Field {
                name: label.to_string(),
                tensor: Tensor {
                    shape: vec![n],
                    data: Data::I64(labels),
                },
            },
            parts,
        },
    ])
}

pub(crate) fn read_npy_field(name: &str, path: &Path) -> Result<Loaded, DataError> {
    let tensor = crate::io::read_npy(path)?;
    if tensor.shape.is_empty() {
        return Err(format_error(
            path,
            "a 0-d array has no sample axis; a dataset field needs its first dimension to count samples",
        ));
    }
    Ok(Loaded::single(name, tensor, path))
}
