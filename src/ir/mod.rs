//! The typed graph every later stage consumes: tensor values produced by
//! primitive ops, each traceable to the `.net` source it came from.

pub mod dim;
pub mod expr;
pub mod graph;
pub mod print;

pub use crate::tensor::DType;
pub use dim::{fmt_shape, numel, Dim};
pub use expr::SExpr;
pub use graph::{Graph, Node, NodeId, Origin, TensorType};
