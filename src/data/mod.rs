//! Training data: datasets read whole into memory as named fields (the first
//! axis counts samples), and a [`Loader`] that batches, shuffles and prefetches.
//!
//! ```no_run
//! use netc::data::{DataSpec, Holdout, Loader, LoaderConfig, Normalize};
//! let spec = DataSpec::idx([("image", "train-images.gz"), ("label", "train-labels.gz")])
//!     .normalize("image", Normalize::MeanStd { mean: vec![0.1307], std: vec![0.3081] })
//!     .classes("label", 10);
//! let (train, val) = netc::data::open(&spec)?.holdout(Holdout::Fraction(0.1))?;
//! let mut loader = Loader::new(train, LoaderConfig::train(64, 42))?;
//! while let Some(batch) = loader.next_batch() {
//!     let (_images, _labels) = (&batch.fields[0], &batch.fields[1]);
//! }
//! # Ok::<(), netc::data::DataError>(())
//! ```

mod csv;
mod formats;
pub mod loader;
pub mod spec;

pub use loader::{Batch, Loader, LoaderConfig, LoaderState, Rng};
pub use spec::{Columns, CsvField, CsvHeader, CsvSpec, DataSpec, Normalize, Source};

use crate::io::IoError;
use crate::tensor::{Data, Tensor};
use formats::Loaded;
use std::ops::Range;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tensor(#[from] IoError),
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{}: line {line}, column {column}: {reason}", path.display())]
    Csv {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{}: sample {sample}: `{field}` is {value}, outside 0..{classes} for {classes} classes", path.display())]
    LabelOutOfRange {
        path: PathBuf,
        field: String,
        sample: usize,
        value: i64,
        classes: usize,
    },
    #[error("`{field}` ({source_desc}) has {len} samples, but `{first}` ({first_source}) has {first_len}")]
    LengthMismatch {
        field: String,
        source_desc: String,
        len: usize,
        first: String,
        first_source: String,
        first_len: usize,
    },
    #[error("{0}")]
    Spec(String),
    #[error("loader state: {0}")]
    State(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub tensor: Tensor,
}

/// Named fields of equal first dimension, held in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    fields: Vec<Field>,
    len: usize,
}

/// Which samples [`Dataset::holdout`] sets aside for validation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Holdout {
    First(usize),
    Last(usize),
    /// This fraction of the samples, rounded, taken from the end.
    Fraction(f64),
}

impl Dataset {
    pub fn new(fields: Vec<Field>) -> Result<Dataset, DataError> {
        let Some(first) = fields.first() else {
            return Err(DataError::Spec("a dataset needs at least one field".to_string()));
        };
        let len = first.tensor.shape.first().copied().unwrap_or(0);
        for (i, f) in fields.iter().enumerate() {
            if fields[..i].iter().any(|g| g.name == f.name) {
                return Err(DataError::Spec(format!("two fields are named `{}`", f.name)));
            }
            if let Err(e) = crate::io::check_consistent(&f.tensor) {
                return Err(DataError::Spec(format!("field `{}`: {e}", f.name)));
            }
            match f.tensor.shape.first() {
                None => {
                    return Err(DataError::Spec(format!(
                        "field `{}` is 0-d; its first axis must count samples",
                        f.name
                    )))
                }
                Some(&n) if n != len => {
                    return Err(DataError::LengthMismatch {
                        field: f.name.clone(),
                        source_desc: "in memory".to_string(),
                        len: n,
                        first: first.name.clone(),
                        first_source: "in memory".to_string(),
                        first_len: len,
                    })
                }
                Some(_) => {}
            }
        }
        Ok(Dataset { fields, len })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn field(&self, name: &str) -> Option<&Tensor> {
        self.fields.iter().find(|f| f.name == name).map(|f| &f.tensor)
    }

    pub fn names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }

    /// The samples at `indices`, one tensor per field, in field order.
    /// Panics if an index is `>= len()`.
    pub fn gather(&self, indices: &[usize]) -> Vec<Tensor> {
        self.fields
            .iter()
            .map(|f| {
                let t = &f.tensor;
                let row = row_len(t);
                let mut shape = t.shape.clone();
                shape[0] = indices.len();
                let data = match &t.data {
                    Data::F32(v) => Data::F32(gather_rows(v, row, indices)),
                    Data::F64(v) => Data::F64(gather_rows(v, row, indices)),
                    Data::I64(v) => Data::I64(gather_rows(v, row, indices)),
                };
                Tensor { shape, data }
            })
            .collect()
    }

    fn slice(&self, range: Range<usize>) -> Dataset {
        let fields = self
            .fields
            .iter()
            .map(|f| {
                let t = &f.tensor;
                let row = row_len(t);
                let span = range.start * row..range.end * row;
                let mut shape = t.shape.clone();
                shape[0] = range.len();
                let data = match &t.data {
                    Data::F32(v) => Data::F32(v[span].to_vec()),
                    Data::F64(v) => Data::F64(v[span].to_vec()),
                    Data::I64(v) => Data::I64(v[span].to_vec()),
                };
                Field {
                    name: f.name.clone(),
                    tensor: Tensor { shape, data },
                }
            })
            .collect();
        Dataset {
            fields,
            len: range.len(),
        }
    }

    /// The first `n` samples and the rest.
    pub fn split_at(&self, n: usize) -> Result<(Dataset, Dataset), DataError> {
        if n > self.len {
            return Err(DataError::Spec(format!(
                "cannot split {n} samples off a dataset of {}",
                self.len
            )));
        }
        Ok((self.slice(0..n), self.slice(n..self.len)))
    }

    /// `(train, validation)`. The split is by position, not random: a file
    /// sorted by class needs shuffling before it is split.
    pub fn holdout(&self, holdout: Holdout) -> Result<(Dataset, Dataset), DataError> {
        let n = match holdout {
            Holdout::First(n) | Holdout::Last(n) => n,
            Holdout::Fraction(f) => {
                if !(0.0..=1.0).contains(&f) {
                    return Err(DataError::Spec(format!(
                        "a validation fraction must lie in [0, 1], not {f}"
                    )));
                }
                (f * self.len as f64).round() as usize
            }
        };
        if n > self.len {
            return Err(DataError::Spec(format!(
                "cannot hold out {n} samples from a dataset of {}",
                self.len
            )));
        }
        Ok(match holdout {
            Holdout::First(_) => {
                let (val, train) = self.split_at(n)?;
                (train, val)
            }
            Holdout::Last(_) | Holdout::Fraction(_) => self.split_at(self.len - n)?,
        })
    }
}

/// Elements per sample.
fn row_len(t: &Tensor) -> usize {
    t.shape[1..].iter().product()
}

fn gather_rows<T: Copy>(v: &[T], row: usize, indices: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(row * indices.len());
    for &i in indices {
        out.extend_from_slice(&v[i * row..(i + 1) * row]);
    }
    out
}

/// Reads the files the spec names, checks them against each other and the
/// spec, and applies its normalisation.
pub fn open(spec: &DataSpec) -> Result<Dataset, DataError> {
    let mut loaded: Vec<Loaded> = match &spec.source {
        Source::Idx(fields) => fields
            .iter()
            .map(|(name, path)| formats::read_idx(name, path))
            .collect::<Result<_, _>>()?,
        Source::Npy(fields) => fields
            .iter()
            .map(|(name, path)| formats::read_npy_field(name, path))
            .collect::<Result<_, _>>()?,
        Source::Cifar10 { image, label, files } => formats::read_cifar10(image, label, files)?,
        Source::Csv(csv) => csv::read_csv(csv)?,
    };
    if let Some((first, rest)) = loaded.split_first() {
        let first_len = first.field.tensor.shape[0];
        for l in rest {
            let len = l.field.tensor.shape[0];
            if len != first_len {
                return Err(DataError::LengthMismatch {
                    field: l.field.name.clone(),
                    source_desc: l.describe(),
                    len,
                    first: first.field.name.clone(),
                    first_source: first.describe(),
                    first_len,
                });
            }
        }
    }
    let find = |loaded: &[Loaded], name: &str| {
        loaded.iter().position(|l| l.field.name == name).ok_or_else(|| {
            let names: Vec<&str> = loaded.iter().map(|l| l.field.name.as_str()).collect();
            DataError::Spec(format!("no field `{name}` (the data has {})", names.join(", ")))
        })
    };
    for (name, classes) in &spec.classes {
        let l = &loaded[find(&loaded, name)?];
        let Data::I64(values) = &l.field.tensor.data else {
            return Err(DataError::Spec(format!(
                "field `{name}` is {}; a class count applies to integer labels",
                l.field.tensor.dtype()
            )));
        };
        if let Some((i, &value)) = values
            .iter()
            .enumerate()
            .find(|&(_, &v)| usize::try_from(v).map_or(true, |v| v >= *classes))
        {
            let (path, sample) = l.locate(i);
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                field: name.clone(),
                sample,
                value,
                classes: *classes,
            });
        }
    }
    for (name, how) in &spec.normalize {
        let k = find(&loaded, name)?;
        normalize(&mut loaded[k].field.tensor, how).map_err(|m| DataError::Spec(format!("normalize `{name}`: {m}")))?;
    }
    Dataset::new(loaded.into_iter().map(|l| l.field).collect())
}

fn normalize(t: &mut Tensor, how: &Normalize) -> Result<(), String> {
    let (mean, std) = match how {
        Normalize::Scale(s) => (vec![0.0], vec![1.0 / s]),
        Normalize::MeanStd { mean, std } => (mean.clone(), std.clone()),
    };
    if mean.is_empty() || mean.len() != std.len() {
        return Err(format!(
            "{} mean(s) and {} std(s); give one of each per channel",
            mean.len(),
            std.len()
        ));
    }
    if std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
        return Err("a std (or scale) of zero or a non-finite value".to_string());
    }
    let channels = mean.len();
    if channels > 1 && t.shape.get(1) != Some(&channels) {
        return Err(format!(
            "{channels} channel values, but the field's shape {:?} has {} channels on axis 1",
            t.shape,
            t.shape.get(1).map_or("no".to_string(), |c| c.to_string())
        ));
    }
    // A single value covers everything: one "channel" spanning each whole sample.
    let plane = if channels > 1 {
        t.shape[2..].iter().product::<usize>()
    } else {
        t.len()
    }
    .max(1);
    match (&mut t.data, how) {
        // Scaling multiplies, which is what users compare against (x * (1/255)).
        (Data::F32(v), Normalize::Scale(s)) => v.iter_mut().for_each(|x| *x *= *s as f32),
        (Data::F64(v), Normalize::Scale(s)) => v.iter_mut().for_each(|x| *x *= *s),
        // Same arithmetic as torchvision in f32: subtract, then divide.
        (Data::F32(v), _) => {
            for (k, chunk) in v.chunks_mut(plane).enumerate() {
                let (m, s) = (mean[k % channels] as f32, std[k % channels] as f32);
                chunk.iter_mut().for_each(|x| *x = (*x - m) / s);
            }
        }
        (Data::F64(v), _) => {
            for (k, chunk) in v.chunks_mut(plane).enumerate() {
                let (m, s) = (mean[k % channels], std[k % channels]);
                chunk.iter_mut().for_each(|x| *x = (*x - m) / s);
            }
        }
        (Data::I64(_), _) => return Err("the field is i64; normalisation applies to float fields".to_string()),
    }
    Ok(())
}
