//! Flags and helpers that several commands share.

use super::CliError;
use crate::device::cache::DiskCache;
use crate::diag::did_you_mean;
use crate::exec::{Device, DeviceChoice};
use std::collections::HashMap;
use std::path::PathBuf;

/// `NAME=PATH`, as in `--input image=x.npy`.
pub fn named_path(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err(format!("expected NAME=PATH, got `{text}`")),
    }
}

/// `SYMBOL=SIZE`, as in `--dim B=64`.
pub fn dim_binding(text: &str) -> Result<(String, i64), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected SYMBOL=SIZE, got `{text}`"))?;
    let size: i64 = value
        .parse()
        .map_err(|_| format!("`{value}` is not a size (in `{text}`)"))?;
    if size <= 0 {
        return Err(format!("sizes must be positive (in `{text}`)"));
    }
    Ok((name.to_string(), size))
}

/// The compile cache, unless `--no-cache`.
pub fn cache(no_cache: bool) -> Option<DiskCache> {
    if no_cache {
        None
    } else {
        DiskCache::open_default()
    }
}

/// Picks the device; `auto` without a GPU says so in one line.
pub fn device(choice: DeviceChoice) -> Result<Device, CliError> {
    Device::select(choice, |why| eprintln!("netc: {why}")).map_err(|e| {
        CliError::new(format!("cannot use the cuda device: {e}"))
            .hint("use `--device cpu` or `--device auto` on a machine without a GPU")
    })
}

/// Binds every symbol of `symbols` from `--dim` flags, falling back to
/// `defaults`; an unknown `--dim` symbol is an error.
pub fn bind_symbols(
    symbols: &[String],
    dims: &[(String, i64)],
    defaults: &HashMap<String, i64>,
) -> Result<HashMap<String, i64>, CliError> {
    let mut bound = HashMap::new();
    for (name, size) in dims {
        if !symbols.contains(name) {
            let hint = match did_you_mean(name, symbols.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if symbols.is_empty() => "this model has no symbolic sizes".to_string(),
                None => format!("the model's symbolic sizes are {}", symbols.join(", ")),
            };
            return Err(CliError::new(format!("`--dim {name}=...`: the model has no size `{name}`")).hint(hint));
        }
        bound.insert(name.clone(), *size);
    }
    for s in symbols {
        if !bound.contains_key(s) {
            let v = defaults.get(s).copied().unwrap_or(1);
            bound.insert(s.clone(), v);
        }
    }
    Ok(bound)
}
