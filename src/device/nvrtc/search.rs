//! Where NVRTC is looked for, and opening the library from there.

use super::{CHECKOUT_LIB_DIR, LIBRARY_FILE};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// One place to try to open NVRTC from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An absolute or relative file path, opened only if it exists.
    File(PathBuf),
    /// A bare name for the dynamic loader's own search (`LD_LIBRARY_PATH`, ld.so.cache).
    System(String),
}

pub(super) fn location_name(location: &Location) -> String {
    match location {
        Location::File(path) => path.display().to_string(),
        Location::System(name) => name.clone(),
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::System(name) => write!(f, "{name} (system library search)"),
        }
    }
}

/// The ordered list of places NVRTC is looked for; building it reads nothing
/// global, so the order can be tested.
#[derive(Clone, Debug)]
pub struct NvrtcSearch {
    pub(super) locations: Vec<Location>,
}

impl NvrtcSearch {
    /// The search the process uses: `$NETC_NVRTC`, else this checkout's
    /// `.nvrtc/`, else a `.nvrtc/` next to or above the executable, else the
    /// system's library search.
    pub fn from_env() -> NvrtcSearch {
        let explicit = std::env::var_os("NETC_NVRTC");
        let exe = std::env::current_exe().ok();
        NvrtcSearch::new(
            explicit.as_deref(),
            Path::new(env!("CARGO_MANIFEST_DIR")),
            exe.as_deref(),
        )
    }

    /// `explicit` (a library file or a folder holding it) is the only place
    /// searched when set and non-empty: a user who names a library should get
    /// an error when it is not there, not a different NVRTC.
    pub fn new(explicit: Option<&OsStr>, checkout: &Path, exe: Option<&Path>) -> NvrtcSearch {
        if let Some(explicit) = explicit.filter(|e| !e.is_empty()) {
            let path = PathBuf::from(explicit);
            let file = if path.is_dir() { path.join(LIBRARY_FILE) } else { path };
            return NvrtcSearch {
                locations: vec![Location::File(file)],
            };
        }
        let mut locations = vec![Location::File(checkout.join(CHECKOUT_LIB_DIR).join(LIBRARY_FILE))];
        // A binary carried to another machine, or installed, finds a `.nvrtc/`
        // that travelled with it, or the library itself next to it.
        if let Some(exe_dir) = exe.and_then(Path::parent) {
            locations.push(Location::File(exe_dir.join(LIBRARY_FILE)));
            for dir in exe_dir.ancestors() {
                locations.push(Location::File(dir.join(CHECKOUT_LIB_DIR).join(LIBRARY_FILE)));
            }
        }
        // The pinned major version first, then cudarc's own list of names.
        let mut names = vec![LIBRARY_FILE.to_string()];
        names.extend(cudarc::get_lib_name_candidates("nvrtc"));
        locations.extend(names.into_iter().map(Location::System));
        let mut unique = Vec::with_capacity(locations.len());
        for location in locations {
            if !unique.contains(&location) {
                unique.push(location);
            }
        }
        NvrtcSearch { locations: unique }
    }

    pub fn locations(&self) -> &[Location] {
        &self.locations
    }
}

pub(super) fn open_location(location: &Location) -> Result<(libloading::Library, PathBuf), String> {
    match location {
        Location::File(path) => {
            if !path.is_file() {
                return Err("no such file".to_string());
            }
            // dlopen treats a name with a slash as a path and one without as a
            // search name; keep a relative path a path.
            let path = if path.is_relative() {
                Path::new(".").join(path)
            } else {
                path.clone()
            };
            let name = path.to_str().ok_or_else(|| "path is not valid UTF-8".to_string())?;
            open_library(name).map(|lib| (lib, path.clone()))
        }
        Location::System(name) => open_library(name).map(|lib| (lib, PathBuf::from(name))),
    }
}

#[cfg(unix)]
fn open_library(name: &str) -> Result<libloading::Library, String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: loading NVRTC runs its initialisers, which have no
    // preconditions; RTLD_NOW surfaces missing dependencies here rather than
    // at a later call, and RTLD_GLOBAL lets cudarc's by-name dlopen find it.
    unsafe { Library::open(Some(name), RTLD_NOW | RTLD_GLOBAL) }
        .map(libloading::Library::from)
        .map_err(|e| e.to_string())
}

#[cfg(not(unix))]
fn open_library(name: &str) -> Result<libloading::Library, String> {
    // SAFETY: as above; the platform loader has no global/local distinction.
    unsafe { libloading::Library::new(name) }.map_err(|e| e.to_string())
}
