//! The cpu device (generated CUDA C on the host shim), with both the CPU
//! and the GPU schedules, against the reference evaluator: every op case on
//! random shapes, and every example model.

mod common;

use common::{cases, device::check_against_reference};

#[test]
fn every_op_case_matches_the_reference() {
    for seed in [1, 2] {
        for c in cases::all(seed) {
            eprintln!("{} (seed {seed})", c.name);
            check_against_reference(
                &format!("{} (seed {seed})", c.name),
                &c.case.graph,
                &c.case.values,
                1e-5,
            );
        }
    }
}

#[test]
fn every_op_backward_matches_the_reference() {
    for c in cases::all(3) {
        let (mut graph, required) = common::programs::backward_graph(&c);
        graph.outputs = required
            .iter()
            .enumerate()
            .map(|(i, &id)| (format!("grad{i}"), id))
            .collect();
        check_against_reference(&format!("{} backward", c.name), &graph, &c.case.values, 1e-4);
    }
}
