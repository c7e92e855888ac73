//! Graph-to-plan passes: fusion (which nodes share a kernel) and planning
//! (kernel order and buffer reuse).

pub mod fusion;
pub mod plan;
