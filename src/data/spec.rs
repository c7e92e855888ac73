//! What to load: the format, its files, the names of the fields they become,
//! and what to do to them after loading.

use super::DataError;
use crate::tensor::DType;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub struct DataSpec {
    pub source: Source,
    /// Applied in order, after loading.
    pub normalize: Vec<(String, Normalize)>,
    /// Integer fields whose values must lie in `0..n` (class labels).
    pub classes: Vec<(String, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// One IDX file (plain or gzipped) per field. Multi-dimensional unsigned-byte
    /// files become f32 in [0, 1], with a channel axis added to 3-d images
    /// (`[N, H, W]` → `[N, 1, H, W]`); 1-d files become i64 (labels).
    Idx(Vec<(String, PathBuf)>),
    /// CIFAR-10 binary batches, concatenated in the order given.
    Cifar10 {
        image: String,
        label: String,
        files: Vec<PathBuf>,
    },
    /// One `.npy` file per field, kept in the dtype it was read as.
    Npy(Vec<(String, PathBuf)>),
    Csv(CsvSpec),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Normalize {
    /// Multiply every element (1/255 for raw pixel values).
    Scale(f64),
    /// `(x - mean[c]) / std[c]` over axis 1 (the channel axis of `[N, C, ...]`),
    /// as torchvision's `Normalize` does; a single value applies to all channels.
    MeanStd { mean: Vec<f64>, std: Vec<f64> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct CsvSpec {
    pub path: PathBuf,
    pub header: CsvHeader,
    pub delimiter: u8,
    pub fields: Vec<CsvField>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvHeader {
    Present,
    Absent,
    /// The first line is a header if any of its cells is not a number.
    Auto,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CsvField {
    pub name: String,
    pub columns: Columns,
    /// I64 requires whole numbers; F32 and F64 take any number.
    pub dtype: DType,
    /// Shape of one sample (e.g. `[1, 28, 28]`); `None` gives `[N, columns]`, or
    /// `[N]` for a single column.
    pub shape: Option<Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Columns {
    /// One column, counted from 0; negative counts from the end (-1 is the last).
    One(isize),
    /// Columns `start..end`, counted from 0.
    Range(usize, usize),
    /// Every column no other field takes.
    Rest,
}

impl DataSpec {
    fn new(source: Source) -> DataSpec {
        DataSpec {
            source,
            normalize: Vec::new(),
            classes: Vec::new(),
        }
    }

    /// `DataSpec::idx([("image", "train-images.gz"), ("label", "train-labels.gz")])`.
    pub fn idx<N: Into<String>, P: Into<PathBuf>>(fields: impl IntoIterator<Item = (N, P)>) -> DataSpec {
        DataSpec::new(Source::Idx(named(fields)))
    }

    pub fn npy<N: Into<String>, P: Into<PathBuf>>(fields: impl IntoIterator<Item = (N, P)>) -> DataSpec {
        DataSpec::new(Source::Npy(named(fields)))
    }

    pub fn cifar10<P: Into<PathBuf>>(
        image: impl Into<String>,
        label: impl Into<String>,
        files: impl IntoIterator<Item = P>,
    ) -> DataSpec {
        DataSpec::new(Source::Cifar10 {
            image: image.into(),
            label: label.into(),
            files: files.into_iter().map(Into::into).collect(),
        })
    }

    pub fn csv(spec: CsvSpec) -> DataSpec {
        DataSpec::new(Source::Csv(spec))
    }

    pub fn normalize(mut self, field: impl Into<String>, how: Normalize) -> DataSpec {
        self.normalize.push((field.into(), how));
        self
    }

    pub fn classes(mut self, field: impl Into<String>, n: usize) -> DataSpec {
        self.classes.push((field.into(), n));
        self
    }

    /// Parses the command-line form `FORMAT:FILE,FILE,...`, the files taking
    /// `field_names` in order:
    ///
    /// - `npy:x.npy,y.npy` and `idx:images.gz,labels.gz`: one file per name;
    /// - `cifar10:data_batch_1.bin,data_batch_2.bin`: any number of files, two
    ///   names (image, label);
    /// - `csv:train.csv[,label=COL][,header=yes|no|auto][,shape=1x28x28]`: two
    ///   names, the first taking every column but the label column (default 0,
    ///   negative counts from the end) as f32, the second the label as i64.
    ///
    /// File names cannot contain commas in this form; use the constructors.
    pub fn parse_cli(text: &str, field_names: &[&str]) -> Result<DataSpec, DataError> {
        let spec_err = |m: String| DataError::Spec(format!("--data `{text}`: {m}"));
        let (format, rest) = text.split_once(':').ok_or_else(|| {
            spec_err("expected FORMAT:FILES, e.g. npy:x.npy,y.npy (formats: npy, idx, cifar10, csv)".to_string())
        })?;
        let items: Vec<&str> = rest.split(',').map(str::trim).collect();
        if items.iter().any(|s| s.is_empty()) {
            return Err(spec_err("an empty file name".to_string()));
        }
        let one_per_name = |items: &[&str]| -> Result<Vec<(String, PathBuf)>, DataError> {
            if items.len() != field_names.len() {
                return Err(spec_err(format!(
                    "{} file(s) for {} field(s) ({})",
                    items.len(),
                    field_names.len(),
                    field_names.join(", ")
                )));
            }
            Ok(field_names
                .iter()
                .zip(items)
                .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
                .collect())
        };
        let two_names = || -> Result<(String, String), DataError> {
            match field_names {
                [a, b] => Ok((a.to_string(), b.to_string())),
                _ => Err(spec_err(format!(
                    "this format gives two fields, but {} are wanted ({})",
                    field_names.len(),
                    field_names.join(", ")
                ))),
            }
        };
        match format.trim() {
            "npy" => Ok(DataSpec::new(Source::Npy(one_per_name(&items)?))),
            "idx" => Ok(DataSpec::new(Source::Idx(one_per_name(&items)?))),
            "cifar10" => {
                let (image, label) = two_names()?;
                Ok(DataSpec::cifar10(image, label, items))
            }
            "csv" => {
                let (features, label) = two_names()?;
                let (path, options) = items.split_first().ok_or_else(|| spec_err("no file".to_string()))?;
                let mut label_col: isize = 0;
                let mut header = CsvHeader::Auto;
                let mut shape = None;
                for opt in options {
                    let (key, value) = opt.split_once('=').ok_or_else(|| {
                        spec_err(format!(
                            "`{opt}`: csv takes one file, then options label=, header=, shape="
                        ))
                    })?;
                    match key {
                        "label" => {
                            label_col = value
                                .parse()
                                .map_err(|_| spec_err(format!("label={value}: expected a column number")))?
                        }
                        "header" => {
                            header = match value {
                                "yes" => CsvHeader::Present,
                                "no" => CsvHeader::Absent,
                                "auto" => CsvHeader::Auto,
                                _ => return Err(spec_err(format!("header={value}: expected yes, no or auto"))),
                            }
                        }
                        "shape" => {
                            let dims = value
                                .split('x')
                                .map(str::parse)
                                .collect::<Result<Vec<usize>, _>>()
                                .map_err(|_| spec_err(format!("shape={value}: expected e.g. 1x28x28")))?;
                            shape = Some(dims);
                        }
                        _ => return Err(spec_err(format!("unknown csv option `{key}` (label, header, shape)"))),
                    }
                }
                Ok(DataSpec::csv(CsvSpec {
                    path: PathBuf::from(path),
                    header,
                    delimiter: b',',
                    fields: vec![
                        CsvField {
                            name: features,
                            columns: Columns::Rest,
                            dtype: DType::F32,
                            shape,
                        },
                        CsvField {
                            name: label,
                            columns: Columns::One(label_col),
                            dtype: DType::I64,
                            shape: None,
                        },
                    ],
                }))
            }
            other => Err(spec_err(format!(
                "unknown format `{other}` (formats: npy, idx, cifar10, csv)"
            ))),
        }
    }
}

impl CsvSpec {
    /// Comma-separated, header detected; add fields with [`CsvSpec::field`].
    pub fn new(path: impl Into<PathBuf>) -> CsvSpec {
        CsvSpec {
            path: path.into(),
            header: CsvHeader::Auto,
            delimiter: b',',
            fields: Vec::new(),
        }
    }

    pub fn field(mut self, name: impl Into<String>, columns: Columns, dtype: DType) -> CsvSpec {
        self.fields.push(CsvField {
            name: name.into(),
            columns,
            dtype,
            shape: None,
        });
        self
    }

    /// Like [`CsvSpec::field`], with a per-sample shape such as `[1, 28, 28]`.
    pub fn field_shaped(
        mut self,
        name: impl Into<String>,
        columns: Columns,
        dtype: DType,
        shape: Vec<usize>,
    ) -> CsvSpec {
        self.fields.push(CsvField {
            name: name.into(),
            columns,
            dtype,
            shape: Some(shape),
        });
        self
    }
}

fn named<N: Into<String>, P: Into<PathBuf>>(fields: impl IntoIterator<Item = (N, P)>) -> Vec<(String, PathBuf)> {
    fields.into_iter().map(|(n, p)| (n.into(), p.into())).collect()
}
