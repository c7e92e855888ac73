mod common;
use common::programs;
use netc::codegen::Target;
#[test]
fn scratch() {
    let (g, req) = programs::example_training_step("resnet", 8);
    let (_, p) = programs::program("x", &g, &req, Target::Gpu);
    let src = p.source();
    let start = src.find("// k99_").unwrap();
    let end = src[start + 5..]
        .find("\n// k")
        .map(|e| e + start + 5)
        .unwrap_or(src.len());
    println!("{}", &src[start..end]);
}
#[test]
fn report() {
    let nvrtc = common::nvrtc::nvrtc_or_skip().unwrap();
    let (g, req) = programs::example_training_step("resnet", 8);
    let (_, p) = programs::program("x", &g, &req, Target::Gpu);
    let c = nvrtc
        .compile(
            &p.source(),
            &[("netc.cuh", netc::exec::NETC_CUH)],
            netc::device::nvrtc::Target::Cubin { sm: 90 },
            &[],
        )
        .unwrap();
    for r in &c.resources {
        if r.spill_stores_bytes > 0 || r.registers > 100 {
            println!("{:?}", r);
        }
    }
}
