//! On-disk cache of compiled artifacts (PTX, CUBIN, host shared objects).
//!
//! An entry is keyed by a hash of everything that determines its bytes (source,
//! options, architecture, compiler version); the caller supplies those parts.
//! Each entry is stored next to a `.sum` file holding the SHA-256 of its
//! content, so a truncated or corrupted entry is detected, deleted and rebuilt
//! rather than loaded. Writes go to a temporary file that is renamed into
//! place, so a crash never leaves a half-written entry under a valid name.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    pub fn new(dir: impl Into<PathBuf>) -> DiskCache {
        DiskCache { dir: dir.into() }
    }

    /// `$NETC_CACHE_DIR`, else `$XDG_CACHE_HOME/netc`, else `~/.cache/netc`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("NETC_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("netc"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("netc"))
    }

    pub fn open_default() -> Option<DiskCache> {
        Self::default_dir().map(DiskCache::new)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hex SHA-256 over the parts, each length-prefixed so that parts cannot run together.
    pub fn key(parts: &[&[u8]]) -> String {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        hex(&h.finalize())
    }

    /// Path an entry lives at, whether or not it exists.
    pub fn entry_path(&self, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ext}"))
    }

    /// The entry's path if it exists and its checksum holds; a corrupt entry is removed.
    pub fn get_file(&self, key: &str, ext: &str) -> Option<PathBuf> {
        let path = self.entry_path(key, ext);
        let sum_path = sum_path(&path);
        let expected = fs::read_to_string(&sum_path).ok()?;
        match fs::read(&path) {
            Ok(bytes) if hex(&Sha256::digest(&bytes)) == expected.trim() => Some(path),
            _ => {
                let _ = fs::remove_file(&path);
                let _ = fs::remove_file(&sum_path);
                None
            }
        }
    }

    /// The entry's bytes if it exists and is intact.
    pub fn get(&self, key: &str, ext: &str) -> Option<Vec<u8>> {
        self.get_file(key, ext).and_then(|p| fs::read(p).ok())
    }

    /// Stores bytes under the key, atomically; returns the entry's path.
    pub fn put(&self, key: &str, ext: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let path = self.entry_path(key, ext);
        write_atomically(&path, bytes)?;
        write_atomically(&sum_path(&path), hex(&Sha256::digest(bytes)).as_bytes())?;
        Ok(path)
    }

    /// Stores a file that was produced elsewhere (for instance by a compiler).
    pub fn put_file(&self, key: &str, ext: &str, source: &Path) -> io::Result<PathBuf> {
        let bytes = fs::read(source)?;
        self.put(key, ext, &bytes)
    }
}

fn sum_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sum");
    PathBuf::from(s)
}

/// Writes to a unique temporary file in the same folder, then renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.as_os_str().is_empty() {
        fs::create_dir_all(dir)?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), unique()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_cache(name: &str) -> DiskCache {
        let dir = std::env::temp_dir().join(format!("netc-cache-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        DiskCache::new(dir)
    }

    #[test]
    fn round_trips_and_keys_differ_by_part_boundaries() {
        let cache = temp_cache("roundtrip");
        let key = DiskCache::key(&[b"ab", b"c"]);
        assert_ne!(key, DiskCache::key(&[b"a", b"bc"]));
        assert!(cache.get(&key, "ptx").is_none());
        cache.put(&key, "ptx", b"hello").unwrap();
        assert_eq!(cache.get(&key, "ptx").unwrap(), b"hello");
    }

    #[test]
    fn corrupt_entries_are_removed_not_loaded() {
        let cache = temp_cache("corrupt");
        let key = DiskCache::key(&[b"x"]);
        let path = cache.put(&key, "so", b"payload").unwrap();
        fs::write(&path, b"payl").unwrap();
        assert!(cache.get(&key, "so").is_none());
        assert!(!path.exists(), "the corrupt entry must be deleted");
    }
}
