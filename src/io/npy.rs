//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
//!
//! Layout: the magic `\x93NUMPY`, a major and minor version byte, the header
//! length (u16 in 1.0, u32 in 2.0/3.0, little-endian), then a Python dict
//! literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`
//! padded with spaces and a newline, then the raw elements.
//!
//! Floats keep their width (`f2` widens to F32); every integer and bool type
//! widens to I64, since that is the one integer dtype netc computes with.

use super::{decode_elements, element_count, Elem, IoError, IoErrorKind};
use crate::device::cache::write_atomically;
use crate::tensor::{DType, Data, Tensor};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Arrays nest only a few levels deep in a real header; the limit keeps a
/// malicious `((((...` from exhausting the stack.
const MAX_NESTING: usize = 16;

pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor, IoError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| IoError::new(path, IoErrorKind::Os(e)))?;
    decode_npy(&bytes).map_err(|kind| IoError::new(path, kind))
}

/// Writes F32, F64 or I64 as a version 1.0 file (2.0 if the header outgrows 64 KiB).
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<(), IoError> {
    let path = path.as_ref();
    let bytes = encode_npy(tensor).map_err(|kind| IoError::new(path, kind))?;
    write_atomically(path, &bytes).map_err(|e| IoError::new(path, IoErrorKind::Os(e)))
}

pub fn encode_npy(tensor: &Tensor) -> Result<Vec<u8>, IoErrorKind> {
    super::check_consistent(tensor)?;
    let descr = match tensor.dtype() {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
    };
    let shape = match tensor.shape.as_slice() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    // The exact text numpy writes, so files are byte-identical to `np.save`.
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // numpy pads the whole preamble to a multiple of 64 so the data is aligned.
    let padded = |prefix: usize| (prefix + dict.len() + 1).next_multiple_of(64) - prefix;
    let (version, header_len) = if padded(10) <= usize::from(u16::MAX) {
        (1u8, padded(10))
    } else {
        (2u8, padded(12))
    };
    let data = tensor.to_le_bytes();
    let mut out = Vec::with_capacity(12 + header_len + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        let len = u32::try_from(header_len)
            .map_err(|_| IoErrorKind::BadHeader(format!("a header of {header_len} bytes cannot be written")))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + header_len - dict.len() - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(&data);
    Ok(out)
}

pub fn decode_npy(bytes: &[u8]) -> Result<Tensor, IoErrorKind> {
    if !bytes.starts_with(MAGIC) {
        return Err(IoErrorKind::NotNpy {
            found: describe_start(bytes),
        });
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(truncated("version", 2, bytes.len() - 6)),
    };
    let len_size = match major {
        1 => 2,
        2 | 3 => 4,
        _ => return Err(IoErrorKind::NpyVersion { major, minor }),
    };
    let len_bytes = bytes
        .get(8..8 + len_size)
        .ok_or_else(|| truncated("header length", len_size, bytes.len() - 8))?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let header_start = 8 + len_size;
    let rest = &bytes[header_start..];
    let header = rest
        .get(..header_len)
        .ok_or_else(|| truncated("header", header_len, rest.len()))?;
    // Versions 1 and 2 store the header in latin-1, version 3 in UTF-8.
    let text: String = if major == 3 {
        std::str::from_utf8(header)
            .map_err(|e| IoErrorKind::BadHeader(format!("not UTF-8: {e}")))?
            .to_string()
    } else {
        header.iter().map(|&b| char::from(b)).collect()
    };
    let header = parse_header(&text)?;
    let elem = parse_descr(&header.descr)?;

    let shape_u64: Vec<u64> = header.shape.clone();
    let too_large = || IoErrorKind::TooLarge {
        shape: shape_u64.clone(),
    };
    let shape: Vec<usize> = header
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| too_large())?;
    let count = element_count(&shape).ok_or_else(too_large)?;
    let nbytes = count.checked_mul(elem.size()).ok_or_else(too_large)?;

    let data = &rest[header_len..];
    if data.len() < nbytes {
        return Err(truncated("data", nbytes, data.len()));
    }
    if data.len() > nbytes {
        return Err(IoErrorKind::TrailingBytes {
            expected: nbytes as u64,
            extra: (data.len() - nbytes) as u64,
        });
    }
    let data = decode_elements(elem, header.big_endian, data)?;
    let data = if header.fortran_order {
        match data {
            Data::F32(v) => Data::F32(fortran_to_c(&v, &shape)),
            Data::F64(v) => Data::F64(fortran_to_c(&v, &shape)),
            Data::I64(v) => Data::I64(fortran_to_c(&v, &shape)),
        }
    } else {
        data
    };
    Ok(Tensor { shape, data })
}

fn truncated(what: &'static str, expected: usize, found: usize) -> IoErrorKind {
    IoErrorKind::Truncated {
        what,
        expected: expected as u64,
        found: found as u64,
    }
}

/// The first bytes of a file, for telling the user what they gave us instead.
fn describe_start(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing (the file is empty)".to_string();
    }
    let head: Vec<String> = bytes.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("the bytes {}", head.join(" "))
}

struct Header {
    descr: String,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<u64>,
}

fn parse_descr(descr: &str) -> Result<Elem, IoErrorKind> {
    let unsupported = |hint| IoErrorKind::UnsupportedDtype {
        dtype: descr.to_string(),
        hint,
    };
    let body = descr.trim_start_matches(['<', '>', '|', '=']);
    let elem = match body {
        "b1" | "?" => Elem::Bool,
        "i1" => Elem::I8,
        "u1" => Elem::U8,
        "i2" => Elem::I16,
        "u2" => Elem::U16,
        "i4" => Elem::I32,
        "u4" => Elem::U32,
        "i8" => Elem::I64,
        "u8" => Elem::U64,
        "f2" => Elem::F16,
        "f4" => Elem::F32,
        "f8" => Elem::F64,
        _ if body.starts_with('c') => {
            return Err(unsupported(
                "complex numbers are not supported; save the real and imaginary parts separately",
            ))
        }
        _ if body.starts_with('f') => {
            return Err(unsupported(
                "float sizes 2, 4 and 8 are supported; cast with .astype(np.float32)",
            ))
        }
        _ => {
            return Err(unsupported(
                "only numeric arrays (floats, integers, bool) are supported; strings, objects, dates and structured dtypes are not",
            ))
        }
    };
    Ok(elem)
}

/// Reorders column-major elements into row-major order.
fn fortran_to_c<T: Copy>(v: &[T], shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 {
        return v.to_vec();
    }
    let mut strides = Vec::with_capacity(shape.len());
    let mut acc = 1;
    for &d in shape {
        strides.push(acc);
        acc *= d;
    }
    let mut out = Vec::with_capacity(v.len());
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0;
    for _ in 0..v.len() {
        out.push(v[offset]);
        // Advance the row-major multi-index (last axis fastest), tracking the
        // column-major offset alongside.
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            offset += strides[k];
            if index[k] < shape[k] {
                break;
            }
            offset -= strides[k] * shape[k];
            index[k] = 0;
        }
    }
    out
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug)]
enum Lit {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

fn parse_header(text: &str) -> Result<Header, IoErrorKind> {
    let bad = |m: String| IoErrorKind::BadHeader(m);
    let mut p = LitParser {
        s: text.as_bytes(),
        pos: 0,
    };
    let lit = p.value(0).map_err(bad)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(bad(format!("unexpected text after the dictionary at byte {}", p.pos)));
    }
    let Lit::Dict(entries) = lit else {
        return Err(bad("the header is not a dictionary".to_string()));
    };
    let get = |key: &str| {
        entries.iter().find_map(|(k, v)| match k {
            Lit::Str(s) if s == key => Some(v),
            _ => None,
        })
    };
    let descr = match get("descr") {
        Some(Lit::Str(s)) => s.clone(),
        Some(Lit::Seq(_)) => {
            return Err(IoErrorKind::UnsupportedDtype {
                dtype: "structured".to_string(),
                hint: "structured (record) arrays are not supported; save each field as its own array",
            })
        }
        _ => return Err(bad("no string `descr` key".to_string())),
    };
    let fortran_order = match get("fortran_order") {
        Some(Lit::Bool(b)) => *b,
        _ => return Err(bad("no boolean `fortran_order` key".to_string())),
    };
    let shape = match get("shape") {
        Some(Lit::Seq(items)) => items
            .iter()
            .map(|d| match d {
                Lit::Int(n) => Ok(*n),
                other => Err(bad(format!("shape entry {other:?} is not a dimension"))),
            })
            .collect::<Result<Vec<u64>, _>>()?,
        _ => return Err(bad("no tuple `shape` key".to_string())),
    };
    let big_endian = match descr.as_bytes().first() {
        Some(b'>') => true,
        Some(b'=') => cfg!(target_endian = "big"),
        _ => false,
    };
    Ok(Header {
        descr,
        big_endian,
        fortran_order,
        shape,
    })
}

struct LitParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl LitParser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_NESTING {
            return Err(format!("nested more than {MAX_NESTING} levels deep"));
        }
        match self.peek() {
            None => Err("the header ends early".to_string()),
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Lit::Dict(entries));
                    }
                    let key = self.value(depth + 1)?;
                    self.expect(b':')?;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                    if !self.separator(b'}')? {
                        return Ok(Lit::Dict(entries));
                    }
                }
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(Lit::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    if !self.separator(close)? {
                        return Ok(Lit::Seq(items));
                    }
                }
            }
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos] != q {
                    // Escapes never occur in the strings numpy writes; a backslash is
                    // kept literally, but must not end the string early.
                    if self.s[self.pos] == b'\\' {
                        self.pos += 1;
                    }
                    self.pos += 1;
                }
                if self.pos >= self.s.len() {
                    return Err("a string is not closed".to_string());
                }
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.pos += 1;
                Ok(Lit::Str(text))
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let digits = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                // Python 2 wrote long integers with an `L` suffix.
                if matches!(self.s.get(self.pos), Some(b'L' | b'l')) {
                    self.pos += 1;
                }
                digits
                    .parse::<u64>()
                    .map(Lit::Int)
                    .map_err(|_| format!("dimension {digits} is too large"))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    word => Err(format!("unexpected word `{}`", String::from_utf8_lossy(word))),
                }
            }
            Some(b'-') => Err("a negative number where a dimension was expected".to_string()),
            Some(c) => Err(format!("unexpected character {:?} at byte {}", char::from(c), self.pos)),
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at byte {}", char::from(c), self.pos))
        }
    }

    /// After an item: `,` (true: more may follow) or the closing bracket (false).
    fn separator(&mut self, close: u8) -> Result<bool, String> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(format!("expected `,` or `{}` at byte {}", char::from(close), self.pos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_transposed_into_row_major() {
        // A 2×3 array [[0,1,2],[3,4,5]] stored column by column.
        let stored = [0, 3, 1, 4, 2, 5];
        assert_eq!(fortran_to_c(&stored, &[2, 3]), vec![0, 1, 2, 3, 4, 5]);
        // 2×2×2: element (i,j,k) has value 100i+10j+k, stored with i fastest.
        let mut stored = Vec::new();
        for k in 0..2 {
            for j in 0..2 {
                for i in 0..2 {
                    stored.push(100 * i + 10 * j + k);
                }
            }
        }
        assert_eq!(
            fortran_to_c(&stored, &[2, 2, 2]),
            vec![0, 1, 10, 11, 100, 101, 110, 111]
        );
    }

    #[test]
    fn header_parser_accepts_python2_longs_and_rejects_deep_nesting() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }").unwrap();
        assert_eq!(h.shape, vec![2, 3]);
        let deep = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': {}{}}}",
            "(".repeat(100),
            ")".repeat(100)
        );
        let err = parse_header(&deep).err().unwrap().to_string();
        assert!(err.contains("nested"), "{err}");
    }
}
