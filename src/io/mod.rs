//! Tensor files: NumPy `.npy` and safetensors.
//!
//! Every error carries the path of the file it is about, and every check a
//! malformed file can trip is an error value, never a panic: these readers see
//! files from anywhere. Every write goes through
//! [`write_atomically`](crate::device::cache::write_atomically), so a crash
//! never leaves a half-written file under the final name.

pub mod npy;
pub mod safetensors;

use crate::tensor::Data;
use std::path::{Path, PathBuf};

pub use self::npy::{decode_npy, encode_npy, read_npy, write_npy};
pub use self::safetensors::{
    decode_safetensors, encode_safetensors, read_safetensors, read_safetensors_with_metadata, write_safetensors,
    write_safetensors_with_metadata,
};

/// What went wrong with which file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct IoError {
    pub path: PathBuf,
    pub kind: IoErrorKind,
}

impl IoError {
    pub fn new(path: &Path, kind: IoErrorKind) -> IoError {
        IoError {
            path: path.to_path_buf(),
            kind,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IoErrorKind {
    #[error("{0}")]
    Os(#[source] std::io::Error),
    #[error("not an .npy file: it starts with {found}, an .npy file starts with \\x93NUMPY")]
    NotNpy { found: String },
    #[error("unsupported .npy format version {major}.{minor} (versions 1.0, 2.0 and 3.0 are read)")]
    NpyVersion { major: u8, minor: u8 },
    #[error("truncated: expected {expected} bytes of {what}, found {found}")]
    Truncated {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("{extra} bytes after the {expected} bytes of data the header describes (a second array appended, or a wrong shape in the header?)")]
    TrailingBytes { expected: u64, extra: u64 },
    #[error("header not parsable: {0}")]
    BadHeader(String),
    #[error("unsupported dtype `{dtype}`: {hint}")]
    UnsupportedDtype { dtype: String, hint: &'static str },
    #[error("shape {shape:?} has more elements than this machine can address")]
    TooLarge { shape: Vec<u64> },
    #[error("element {index} is {value}, which does not fit in i64 (u64 arrays are read as i64)")]
    OutOfRange { index: usize, value: u64 },
    #[error("tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
    #[error("not a valid safetensors file: {0}")]
    Safetensors(String),
    #[error("the tensor's shape {shape:?} holds {expected} elements but its data has {found}")]
    Inconsistent {
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
}

/// Elements in `shape`, or `None` if the product overflows.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// A tensor built by a caller with public fields may disagree with itself; writing
/// it would produce a file no reader accepts.
pub(crate) fn check_consistent(t: &crate::tensor::Tensor) -> Result<(), IoErrorKind> {
    let expected = element_count(&t.shape);
    if expected == Some(t.len()) {
        Ok(())
    } else {
        Err(IoErrorKind::Inconsistent {
            shape: t.shape.clone(),
            expected: expected.unwrap_or(usize::MAX),
            found: t.len(),
        })
    }
}

/// Element types as stored in a file, before widening to a [`DType`](crate::tensor::DType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    Bool,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
    F64,
}

impl Elem {
    pub(crate) fn size(self) -> usize {
        match self {
            Elem::Bool | Elem::I8 | Elem::U8 => 1,
            Elem::I16 | Elem::U16 | Elem::F16 | Elem::BF16 => 2,
            Elem::I32 | Elem::U32 | Elem::F32 => 4,
            Elem::I64 | Elem::U64 | Elem::F64 => 8,
        }
    }
}

/// Decodes elements, widening floats to F32/F64 and integers and bools to I64.
pub(crate) fn decode_elements(elem: Elem, big: bool, data: &[u8]) -> Result<Data, IoErrorKind> {
    let ints = |v: Vec<i64>| Ok(Data::I64(v));
    match elem {
        Elem::Bool => ints(data.iter().map(|&b| i64::from(b != 0)).collect()),
        Elem::I8 => ints(data.iter().map(|&b| i64::from(b as i8)).collect()),
        Elem::U8 => ints(data.iter().map(|&b| i64::from(b)).collect()),
        Elem::I16 => ints(
            words::<2>(data, big)
                .map(|w| i64::from(i16::from_le_bytes(w)))
                .collect(),
        ),
        Elem::U16 => ints(
            words::<2>(data, big)
                .map(|w| i64::from(u16::from_le_bytes(w)))
                .collect(),
        ),
        Elem::I32 => ints(
            words::<4>(data, big)
                .map(|w| i64::from(i32::from_le_bytes(w)))
                .collect(),
        ),
        Elem::U32 => ints(
            words::<4>(data, big)
                .map(|w| i64::from(u32::from_le_bytes(w)))
                .collect(),
        ),
        Elem::I64 => ints(words::<8>(data, big).map(i64::from_le_bytes).collect()),
        Elem::U64 => words::<8>(data, big)
            .enumerate()
            .map(|(index, w)| {
                let value = u64::from_le_bytes(w);
                i64::try_from(value).map_err(|_| IoErrorKind::OutOfRange { index, value })
            })
            .collect::<Result<_, _>>()
            .map(Data::I64),
        Elem::F16 => Ok(Data::F32(
            words::<2>(data, big)
                .map(|w| half::f16::from_le_bytes(w).to_f32())
                .collect(),
        )),
        Elem::BF16 => Ok(Data::F32(
            words::<2>(data, big)
                .map(|w| half::bf16::from_le_bytes(w).to_f32())
                .collect(),
        )),
        Elem::F32 => Ok(Data::F32(words::<4>(data, big).map(f32::from_le_bytes).collect())),
        Elem::F64 => Ok(Data::F64(words::<8>(data, big).map(f64::from_le_bytes).collect())),
    }
}

/// The slice as `N`-byte words in little-endian order, byte-swapped if the data is
/// big-endian. A trailing partial word is dropped; callers check the total size first.
fn words<const N: usize>(bytes: &[u8], big_endian: bool) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(move |c| {
        let mut w = [0u8; N];
        w.copy_from_slice(c);
        if big_endian {
            w.reverse();
        }
        w
    })
}
