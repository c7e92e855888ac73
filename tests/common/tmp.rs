//! A scratch folder per test, for test files that include only this
//! (`#[path = "common/tmp.rs"] mod tmp;`), not all of `common`.
// Each test binary that includes this uses only some of it.
#![allow(dead_code)]

use std::path::PathBuf;

/// A fresh folder under the system temp dir, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// `netc-<test binary>-<test>-<pid>`, emptied if a killed run left it behind.
    pub fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "netc-{}-{test}-{}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn count(&self) -> usize {
        std::fs::read_dir(&self.0).unwrap().count()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
