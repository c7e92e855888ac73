//! The C++ appended after the CUDA text in the host translation unit: per
//! kernel, an exported entry point that unpacks the argument array and hands
//! the launch to the runtime, plus the callbacks the runtime runs blocks and
//! threads through. The CUDA text itself is never modified.

use super::{CType, HostError, HostKernelSig, HostParam};
use std::collections::HashSet;
use std::fmt::Write;

impl CType {
    /// The C type as the generated CUDA C spells it.
    pub fn c_name(self) -> &'static str {
        match self {
            CType::F32 => "float",
            CType::F64 => "double",
            CType::I32 => "int",
            CType::I64 => "long long",
            CType::U32 => "unsigned int",
        }
    }
}

impl HostParam {
    fn c_type(&self) -> String {
        match self {
            HostParam::Ptr { elem, is_const: true } => format!("const {}*", elem.c_name()),
            HostParam::Ptr { elem, is_const: false } => format!("{}*", elem.c_name()),
            HostParam::Scalar(t) => t.c_name().to_string(),
        }
    }
}

pub(super) fn entry_symbol(kernel: &str) -> String {
    format!("netc_host_entry_{kernel}")
}

/// Kernel names must be C identifiers (they are pasted into the glue) and unique.
pub(super) fn validate(kernels: &[HostKernelSig]) -> Result<(), HostError> {
    let mut seen = HashSet::new();
    for k in kernels {
        let mut chars = k.name.chars();
        let ident = matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
            && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
        if !ident {
            return Err(HostError::Invalid(format!(
                "kernel name {:?} is not a C identifier",
                k.name
            )));
        }
        if k.name.starts_with("netc_host_") {
            return Err(HostError::Invalid(format!(
                "kernel name `{}` uses the prefix netc_host_, reserved for the host shim",
                k.name
            )));
        }
        if !seen.insert(k.name.as_str()) {
            return Err(HostError::Invalid(format!("kernel `{}` is listed twice", k.name)));
        }
    }
    Ok(())
}

pub(super) fn generate(kernels: &[HostKernelSig]) -> String {
    let mut out = String::from("\n// ---- netc host glue ----\n");
    for k in kernels {
        kernel_glue(&mut out, k);
    }
    out
}

fn kernel_glue(out: &mut String, k: &HostKernelSig) {
    let name = &k.name;
    let types: Vec<String> = k.params.iter().map(HostParam::c_type).collect();
    let type_list = types.join(", ");
    let call_args: Vec<String> = (0..types.len()).map(|i| format!("a{i}")).collect();
    let call_args = call_args.join(", ");
    let args_struct = format!("netc_host_args_{name}");

    // An exact function-type match catches a signature that disagrees with the
    // kernel where an implicit conversion (float to int, say) would not.
    let _ = writeln!(
        out,
        "static_assert(netc_host_same<decltype(&{name}), void (*)({type_list})>::value,\n    \
         \"kernel {name}: its parameters differ from the launch signature ({type_list})\");"
    );
    let _ = writeln!(out, "struct {args_struct} {{\n    netc_host_dims d;");
    for (i, t) in types.iter().enumerate() {
        let _ = writeln!(out, "    {t} a{i};");
    }
    let _ = writeln!(out, "}};");

    if k.cooperative {
        let _ = writeln!(
            out,
            "static void netc_host_setup_{name}(void* p, unsigned long long b, netc_host_block* rt) {{\n    \
             netc_host_enter_block(static_cast<const {args_struct}*>(p)->d, b, rt);\n}}"
        );
        let _ = writeln!(
            out,
            "static void netc_host_thread_{name}(void* p, unsigned t) {{\n    \
             const {args_struct}& a = *static_cast<const {args_struct}*>(p);\n    \
             netc_host_enter_thread(t);\n    \
             {name}({});\n}}",
            (0..types.len())
                .map(|i| format!("a.a{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        let _ = writeln!(
            out,
            "static void netc_host_flat_{name}(void* p, unsigned long long first, unsigned long long end, \
             netc_host_block* rt) {{\n    \
             const {args_struct}& a = *static_cast<const {args_struct}*>(p);"
        );
        // Locals rather than struct fields, so the compiler keeps the
        // arguments in registers across the thread loop.
        for (i, t) in types.iter().enumerate() {
            let _ = writeln!(out, "    {t} const a{i} = a.a{i};");
        }
        let _ = writeln!(
            out,
            "    netc_host_run_flat(a.d, first, end, rt, [=] {{ {name}({call_args}); }});\n}}"
        );
    }

    let _ = writeln!(
        out,
        "NETC_HOST_EXPORT int {}(void* const* args, const unsigned* grid, const unsigned* block, \
         char* err, unsigned long errlen) {{\n    \
         {args_struct} a;\n    \
         a.d = netc_host_make_dims(grid, block);",
        entry_symbol(name)
    );
    for (i, t) in types.iter().enumerate() {
        let _ = writeln!(out, "    a.a{i} = *static_cast<{t} const*>(args[{i}]);");
    }
    if k.cooperative {
        let _ = writeln!(
            out,
            "    return netc_host_launch_coop(a.d, &a, &netc_host_setup_{name}, \
             &netc_host_thread_{name}, err, errlen);\n}}"
        );
    } else {
        let _ = writeln!(
            out,
            "    return netc_host_launch_flat(a.d, &a, &netc_host_flat_{name}, err, errlen);\n}}"
        );
    }
}

/// The thread limit a kernel declares with `__launch_bounds__(N)`, found by
/// scanning the source: CUDA refuses a launch with larger blocks, and so does
/// the host, so that such a launch fails the same way on both.
pub(super) fn launch_bounds(source: &str, kernel: &str) -> Option<u32> {
    const MARK: &str = "__launch_bounds__";
    let mut rest = source;
    while let Some(pos) = rest.find(MARK) {
        rest = &rest[pos + MARK.len()..];
        let Some(args) = rest.trim_start().strip_prefix('(') else {
            continue;
        };
        let close = args.find(')')?;
        let bound = args[..close].split(',').next().map(str::trim);
        let after = args[close + 1..].trim_start();
        // `__launch_bounds__` may come before or after the return type.
        let after = after.strip_prefix("void").map(str::trim_start).unwrap_or(after);
        let ident_len = after
            .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
            .unwrap_or(after.len());
        if &after[..ident_len] == kernel {
            return bound.and_then(|b| b.parse().ok());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_bounds_are_found_before_or_after_the_return_type() {
        let src = "extern \"C\" __global__ void __launch_bounds__(256) k1(int n) {}\n\
                   extern \"C\" __global__ __launch_bounds__( 128, 2 ) void k2(int n) {}\n\
                   extern \"C\" __global__ void k3(int n) {}\n\
                   extern \"C\" __global__ void __launch_bounds__(64) k10(int n) {}";
        assert_eq!(launch_bounds(src, "k1"), Some(256));
        assert_eq!(launch_bounds(src, "k2"), Some(128));
        assert_eq!(launch_bounds(src, "k3"), None);
        assert_eq!(launch_bounds(src, "k10"), Some(64));
        assert_eq!(launch_bounds(src, "k"), None);
    }

    #[test]
    fn names_must_be_unique_identifiers() {
        let sig = |name: &str| HostKernelSig {
            name: name.to_string(),
            params: vec![],
            cooperative: false,
        };
        assert!(validate(&[sig("ok_1"), sig("_b")]).is_ok());
        for bad in ["1x", "a-b", "", "netc_host_x"] {
            assert!(matches!(validate(&[sig(bad)]), Err(HostError::Invalid(_))), "{bad:?}");
        }
        assert!(matches!(validate(&[sig("a"), sig("a")]), Err(HostError::Invalid(_))));
    }
}
