//! NVRTC for integration tests. Include with
//! `#[path = "common/nvrtc.rs"] mod common_nvrtc;` (no `tests/common/mod.rs`
//! needed, so other test helpers can live beside it).

use netc::device::nvrtc::Nvrtc;

/// The process's NVRTC, or `None` (with a note on stderr) so a test can skip
/// on a machine without it. Under CI (`CI=true`) a missing NVRTC must fail the
/// run instead of passing quietly, so this panics there.
pub fn nvrtc_or_skip() -> Option<Nvrtc> {
    match Nvrtc::load() {
        Ok(nvrtc) => Some(nvrtc),
        Err(e) => {
            let message = format!("skipped: NVRTC not found (run scripts/setup.sh)\n{e}");
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{message}");
            }
            eprintln!("{message}");
            None
        }
    }
}
