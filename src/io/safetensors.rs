//! safetensors files: a named set of tensors (a PyTorch `state_dict` such as
//! `conv1.weight`, `fc.bias`) plus a string-to-string metadata map.
//!
//! F32, F64 and I64 are read and written as they are; F16 and BF16 widen to F32,
//! and the narrower integer and bool types to I64, on reading.

use super::{check_consistent, decode_elements, Elem, IoError, IoErrorKind};
use crate::device::cache::write_atomically;
use crate::tensor::{DType, Tensor};
use ::safetensors::tensor::{Metadata, TensorView};
use ::safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub type TensorMap = BTreeMap<String, Tensor>;
pub type MetadataMap = BTreeMap<String, String>;

pub fn read_safetensors(path: impl AsRef<Path>) -> Result<TensorMap, IoError> {
    read_safetensors_with_metadata(path).map(|(tensors, _)| tensors)
}

pub fn read_safetensors_with_metadata(path: impl AsRef<Path>) -> Result<(TensorMap, MetadataMap), IoError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| IoError::new(path, IoErrorKind::Os(e)))?;
    decode_safetensors(&bytes).map_err(|kind| IoError::new(path, kind))
}

/// Writes with the metadata `{"format": "pt"}`, which PyTorch-side loaders
/// (`transformers` among them) expect.
pub fn write_safetensors(path: impl AsRef<Path>, tensors: &TensorMap) -> Result<(), IoError> {
    write_safetensors_with_metadata(path, tensors, &MetadataMap::new())
}

/// Writes the given metadata, adding `"format": "pt"` unless it names a format.
pub fn write_safetensors_with_metadata(
    path: impl AsRef<Path>,
    tensors: &TensorMap,
    metadata: &MetadataMap,
) -> Result<(), IoError> {
    let path = path.as_ref();
    let bytes = encode_safetensors(tensors, metadata).map_err(|kind| IoError::new(path, kind))?;
    write_atomically(path, &bytes).map_err(|e| IoError::new(path, IoErrorKind::Os(e)))
}

pub fn encode_safetensors(tensors: &TensorMap, metadata: &MetadataMap) -> Result<Vec<u8>, IoErrorKind> {
    let mut bytes = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if name == "__metadata__" {
            return Err(tensor_error(name, "this name is reserved by the format"));
        }
        check_consistent(t).map_err(|e| tensor_error(name, e))?;
        bytes.push(t.to_le_bytes());
    }
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, t), data) in tensors.iter().zip(&bytes) {
        let dtype = match t.dtype() {
            DType::F32 => Dtype::F32,
            DType::F64 => Dtype::F64,
            DType::I64 => Dtype::I64,
        };
        let view = TensorView::new(dtype, t.shape.clone(), data).map_err(|e| tensor_error(name, e))?;
        views.push((name.as_str(), view));
    }
    let mut meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    meta.entry("format".to_string()).or_insert_with(|| "pt".to_string());
    ::safetensors::serialize(views, Some(meta)).map_err(|e| IoErrorKind::Safetensors(e.to_string()))
}

pub fn decode_safetensors(bytes: &[u8]) -> Result<(TensorMap, MetadataMap), IoErrorKind> {
    // The crate reports truncation only as "invalid header length" or "incomplete
    // metadata"; checking the sizes here first gives the user byte counts.
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(IoErrorKind::Truncated {
            what: "header length",
            expected: 8,
            found: bytes.len() as u64,
        });
    };
    let mut word = [0u8; 8];
    word.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(word);
    let after = (bytes.len() - 8) as u64;
    if header_len > after {
        return Err(IoErrorKind::Truncated {
            what: "header",
            expected: header_len,
            found: after,
        });
    }
    let header = &bytes[8..8 + header_len as usize];
    let text = std::str::from_utf8(header).map_err(|e| IoErrorKind::BadHeader(format!("not UTF-8: {e}")))?;
    let parsed: Metadata = serde_json::from_str(text).map_err(|e| IoErrorKind::BadHeader(e.to_string()))?;
    let found = after - header_len;
    let expected = parsed.data_len() as u64;
    if found < expected {
        return Err(IoErrorKind::Truncated {
            what: "tensor data",
            expected,
            found,
        });
    }

    let file = SafeTensors::deserialize(bytes).map_err(|e| IoErrorKind::Safetensors(e.to_string()))?;
    let mut tensors = TensorMap::new();
    for (name, view) in file.tensors() {
        let tensor = convert(&view).map_err(|e| tensor_error(&name, e))?;
        tensors.insert(name, tensor);
    }
    let metadata = parsed.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok((tensors, metadata))
}

fn tensor_error(name: &str, reason: impl ToString) -> IoErrorKind {
    IoErrorKind::Tensor {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

fn convert(view: &TensorView<'_>) -> Result<Tensor, IoErrorKind> {
    let elem = match view.dtype() {
        Dtype::F16 => Elem::F16,
        Dtype::BF16 => Elem::BF16,
        Dtype::F32 => Elem::F32,
        Dtype::F64 => Elem::F64,
        Dtype::BOOL => Elem::Bool,
        Dtype::I8 => Elem::I8,
        Dtype::U8 => Elem::U8,
        Dtype::I16 => Elem::I16,
        Dtype::U16 => Elem::U16,
        Dtype::I32 => Elem::I32,
        Dtype::U32 => Elem::U32,
        Dtype::I64 => Elem::I64,
        Dtype::U64 => Elem::U64,
        other => {
            return Err(IoErrorKind::UnsupportedDtype {
                dtype: other.to_string(),
                hint: "floats F16/BF16/F32/F64, integers and bool are supported",
            })
        }
    };
    Ok(Tensor {
        shape: view.shape().to_vec(),
        data: decode_elements(elem, false, view.data())?,
    })
}
