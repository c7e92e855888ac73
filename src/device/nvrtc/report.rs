//! ptxas's resource report and the PTX ISA version, read from NVRTC's output.

/// One kernel's line in ptxas's `-v` report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    pub name: String,
    pub registers: u32,
    pub barriers: u32,
    pub spill_stores_bytes: u64,
    pub spill_loads_bytes: u64,
    /// Static shared memory; dynamic shared memory is chosen at launch.
    pub shared_bytes: u64,
    pub stack_bytes: u64,
}

/// The PTX ISA version from a PTX file's `.version` directive.
pub fn ptx_isa_version(ptx: &str) -> Option<(u32, u32)> {
    let line = ptx.lines().map(str::trim).find(|l| l.starts_with(".version"))?;
    let (major, minor) = line[".version".len()..].trim().split_once('.')?;
    Some((major.trim().parse().ok()?, minor.trim().parse().ok()?))
}

/// Parses ptxas's `-v` report as NVRTC puts it in the program log. Entries
/// follow ptxas's order (not source order); device functions that were not
/// inlined have properties lines too, but only entry functions are reported.
pub fn parse_ptxas_report(log: &str) -> Vec<KernelResources> {
    let mut kernels: Vec<KernelResources> = Vec::new();
    let mut current: Option<usize> = None;
    let mut properties_of_current = false;
    for line in log.lines() {
        if let Some(name) = quoted_after(line, "Compiling entry function '") {
            kernels.push(KernelResources {
                name: name.to_string(),
                ..KernelResources::default()
            });
            current = Some(kernels.len() - 1);
            properties_of_current = false;
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            properties_of_current = current.is_some_and(|i| kernels[i].name == rest.trim());
        } else if line.contains("bytes stack frame") {
            if let (true, Some(i)) = (properties_of_current, current) {
                let k = &mut kernels[i];
                k.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
                k.spill_stores_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
                k.spill_loads_bytes = number_before(line, "bytes spill loads").unwrap_or(0);
            }
        } else if line.contains("Used ") && line.contains(" registers") {
            if let Some(i) = current {
                let k = &mut kernels[i];
                k.registers = number_before(line, "registers").unwrap_or(0) as u32;
                k.barriers = number_before(line, "barriers").unwrap_or(0) as u32;
                k.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    kernels
}

fn quoted_after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let start = line.find(prefix)? + prefix.len();
    let rest = &line[start..];
    Some(&rest[..rest.find('\'')?])
}

/// The integer just before `label`, as in `"... 24 registers"`.
fn number_before(line: &str, label: &str) -> Option<u64> {
    let head = line[..line.find(label)?].trim_end();
    head.rsplit(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}
