//! netc: a kernel compiler and JIT for neural-network layer graphs.
//!
//! The pipeline, one folder per stage, data flowing one way:
//! `syntax` (lexer, parser, AST) → `check` (names, blocks, shapes; builds the
//! IR) → `ir` (the typed graph) → `autodiff` (backward graph) → `passes`
//! (fusion, planning) → `codegen` (kernel IR, CUDA C) → `device` (NVRTC and
//! CUDA, or the host shim) → `exec` → `train`, `data`, `cli`.
//! Primitive ops live in `ops`, each with its shape rule, reference
//! evaluation, backward rule and lowering in one file.

pub mod autodiff;
pub mod check;
pub mod cli;
pub mod codegen;
pub mod data;
pub mod device;
pub mod diag;
pub mod exec;
pub mod io;
pub mod ir;
pub mod ops;
pub mod passes;
pub mod reference;
pub mod rng;
pub mod syntax;
pub mod tensor;
pub mod train;
