//! Numeric CSV: one sample per line, the spec mapping columns to fields.
//! Quoting is limited to a cell wrapped whole in double quotes, which is all
//! numeric exports produce.

use super::formats::{format_error, read_maybe_gz, Loaded};
use super::spec::{Columns, CsvHeader, CsvSpec};
use super::{DataError, Field};
use crate::tensor::{DType, Data, Tensor};

pub(crate) fn read_csv(spec: &CsvSpec) -> Result<Vec<Loaded>, DataError> {
    let path = spec.path.as_path();
    if spec.fields.is_empty() {
        return Err(DataError::Spec(format!(
            "{}: the csv spec names no fields",
            path.display()
        )));
    }
    let bytes = read_maybe_gz(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| format_error(path, format!("not UTF-8 text: {e}")))?;
    let delim = char::from(spec.delimiter);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());

    let Some((first_no, first)) = lines.next() else {
        return Err(format_error(path, "the file has no lines"));
    };
    let first_cells: Vec<&str> = first.split(delim).collect();
    let ncols = first_cells.len();
    let is_header = match spec.header {
        CsvHeader::Present => true,
        CsvHeader::Absent => false,
        CsvHeader::Auto => first_cells.iter().any(|c| number(c).is_none()),
    };

    let columns = resolve_columns(spec, ncols)?;
    let mut bufs: Vec<Data> = spec
        .fields
        .iter()
        .map(|f| match f.dtype {
            DType::F32 => Data::F32(Vec::new()),
            DType::F64 => Data::F64(Vec::new()),
            DType::I64 => Data::I64(Vec::new()),
        })
        .collect();
    let mut rows = 0usize;
    let data_lines = (!is_header).then_some((first_no, first)).into_iter().chain(lines);
    for (line_no, line) in data_lines {
        let cells: Vec<&str> = line.split(delim).collect();
        if cells.len() != ncols {
            return Err(DataError::Csv {
                path: path.to_path_buf(),
                line: line_no,
                column: cells.len().min(ncols) + 1,
                reason: format!("{} cells, but line {first_no} has {ncols}", cells.len()),
            });
        }
        for (k, field) in spec.fields.iter().enumerate() {
            for &c in &columns[k] {
                let cell = clean(cells[c]);
                let bad = |reason: String| DataError::Csv {
                    path: path.to_path_buf(),
                    line: line_no,
                    column: c + 1,
                    reason,
                };
                let x = cell
                    .parse::<f64>()
                    .map_err(|_| bad(format!("`{cell}` is not a number")))?;
                match &mut bufs[k] {
                    Data::F32(v) => v.push(x as f32),
                    Data::F64(v) => v.push(x),
                    Data::I64(v) => v.push(whole(cell, x).ok_or_else(|| {
                        bad(format!(
                            "`{cell}` is not a whole number, and field `{}` is integer",
                            field.name
                        ))
                    })?),
                }
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(format_error(path, "the file has a header but no data rows"));
    }

    let mut out = Vec::with_capacity(spec.fields.len());
    for (k, field) in spec.fields.iter().enumerate() {
        let width = columns[k].len();
        let sample_shape = match &field.shape {
            Some(shape) => {
                if crate::io::element_count(shape) != Some(width) {
                    return Err(DataError::Spec(format!(
                        "{}: field `{}` takes {width} column(s), which cannot be shaped {shape:?}",
                        path.display(),
                        field.name
                    )));
                }
                shape.clone()
            }
            None if width == 1 => Vec::new(),
            None => vec![width],
        };
        let mut shape = vec![rows];
        shape.extend(sample_shape);
        let data = std::mem::replace(&mut bufs[k], Data::I64(Vec::new()));
        out.push(Loaded {
            field: Field {
                name: field.name.clone(),
                tensor: Tensor { shape, data },
            },
            parts: vec![(path.to_path_buf(), rows)],
        });
    }
    Ok(out)
}

fn clean(cell: &str) -> &str {
    let cell = cell.trim();
    cell.strip_prefix('"')
        .and_then(|c| c.strip_suffix('"'))
        .unwrap_or(cell)
        .trim()
}

fn number(cell: &str) -> Option<f64> {
    clean(cell).parse::<f64>().ok()
}

/// `3` and `3.0` are both fine for a label; `3.5` is a mistake, and so is a
/// float too large to hold an exact integer.
fn whole(cell: &str, x: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    cell.parse::<i64>()
        .ok()
        .or_else(|| (x.fract() == 0.0 && x.abs() <= EXACT).then_some(x as i64))
}

/// The column indices of each field, in spec order.
fn resolve_columns(spec: &CsvSpec, ncols: usize) -> Result<Vec<Vec<usize>>, DataError> {
    let err = |m: String| DataError::Spec(format!("{}: {m}", spec.path.display()));
    let mut taken = vec![false; ncols];
    let mut resolved: Vec<Option<Vec<usize>>> = Vec::with_capacity(spec.fields.len());
    for field in &spec.fields {
        let cols = match field.columns {
            Columns::One(i) => {
                let c = if i < 0 {
                    ncols.checked_sub(i.unsigned_abs())
                } else {
                    Some(i.unsigned_abs()).filter(|&c| c < ncols)
                };
                let c = c.ok_or_else(|| {
                    err(format!(
                        "field `{}` wants column {i}, but the file has {ncols} columns",
                        field.name
                    ))
                })?;
                Some(vec![c])
            }
            Columns::Range(a, b) => {
                if a >= b || b > ncols {
                    return Err(err(format!(
                        "field `{}` wants columns {a}..{b}, but the file has {ncols} columns",
                        field.name
                    )));
                }
                Some((a..b).collect())
            }
            Columns::Rest => None,
        };
        if let Some(cols) = &cols {
            for &c in cols {
                taken[c] = true;
            }
        }
        resolved.push(cols);
    }
    if resolved.iter().filter(|c| c.is_none()).count() > 1 {
        return Err(err("only one field can take the remaining columns".to_string()));
    }
    let rest: Vec<usize> = (0..ncols).filter(|&c| !taken[c]).collect();
    resolved
        .into_iter()
        .zip(&spec.fields)
        .map(|(cols, field)| match cols {
            Some(cols) => Ok(cols),
            None if rest.is_empty() => Err(err(format!(
                "field `{}` takes the remaining columns, but no column remains",
                field.name
            ))),
            None => Ok(rest.clone()),
        })
        .collect()
}
