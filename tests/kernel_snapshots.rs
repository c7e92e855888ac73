//! Snapshots of the generated CUDA C: every op (forward and backward, both
//! schedules), every example (inference, both schedules; the training step's
//! forward, backward and optimizer kernels, GPU schedule). A change to a
//! kernel shows up here as a diff to review.

mod common;

use common::{cases, programs};
use netc::codegen::Target;

#[test]
fn op_kernels() {
    for c in cases::all(1) {
        let (g, req) = programs::backward_graph(&c);
        let mut text = String::new();
        for target in [Target::Gpu, Target::Cpu] {
            text += &programs::program(&c.name, &c.case.graph, &[c.out], target).1.source();
            text += "\n";
            text += &programs::program(&c.name, &g, &req, target).1.source();
            text += "\n";
        }
        insta::assert_snapshot!(format!("op_{}", c.name), text);
    }
}

#[test]
fn example_kernels() {
    for name in programs::EXAMPLES {
        let source = programs::example_source(name);
        let (g, req) = programs::example_inference(name, 8);
        let mut text = String::new();
        for target in [Target::Gpu, Target::Cpu] {
            text += &programs::program_with_source(name, &g, &req, target, Some(&source))
                .1
                .source();
            text += "\n";
        }
        insta::assert_snapshot!(format!("example_{name}_inference"), text);
        let (g, req) = programs::example_training_step(name, 8);
        let step = programs::program_with_source(name, &g, &req, Target::Gpu, Some(&source))
            .1
            .source();
        insta::assert_snapshot!(format!("example_{name}_training_step"), step);
    }
}
