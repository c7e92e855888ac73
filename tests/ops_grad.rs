//! Every primitive's backward rule against finite differences, in f64, on
//! random shapes and values.

mod common;

use common::{cases, gradcheck::check};

#[test]
fn every_op_case_matches_finite_differences() {
    for seed in [1, 2, 3] {
        for c in cases::all(seed) {
            eprintln!("{} (seed {seed})", c.name);
            check(c.case, c.out, 20);
        }
    }
}
