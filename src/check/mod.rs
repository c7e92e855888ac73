//! Checking: from the syntax tree to the IR. Resolves names and blocks,
//! evaluates layer declarations and expressions, and runs every op's shape
//! rule as it builds the graph, reporting each problem as a diagnostic with
//! the source spans involved.

mod arith;
mod calls;
mod eval;
pub mod library;
pub mod value;

use crate::diag::Diagnostic;
use crate::ir::{Graph, NodeId};
use crate::syntax::ast;

/// Which graph a model builds: batch norm and dropout differ between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Inference: running statistics, no dropout.
    Eval,
    /// One training step's forward pass: batch statistics (and their
    /// running updates) and dropout masks.
    Train,
}

/// A checked model.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub graph: Graph,
    pub mode: Mode,
    /// Buffers that a training step updates: (buffer, its new value).
    pub state_updates: Vec<(NodeId, NodeId)>,
    /// The dropout seed input, when the training graph has dropout.
    pub seed: Option<NodeId>,
    /// The `train` section; its settings are read by the training driver.
    pub train: Option<ast::TrainSection>,
    /// The `train` section's targets (`target label: i64[B]`), as inputs.
    pub targets: Vec<NodeId>,
    /// The scalar loss of the `train` section's `loss:` setting.
    pub loss: Option<NodeId>,
    /// (scores, class targets) of the loss, when it classifies: what the
    /// `accuracy` metric compares.
    pub classification: Option<(NodeId, NodeId)>,
}

/// The outcome of checking a file: the models that built, and every
/// diagnostic (errors and warnings) in source order.
#[derive(Debug)]
pub struct Checked {
    pub models: Vec<Model>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Checks every model of a parsed file.
pub fn check(ast: &ast::File, mode: Mode) -> Checked {
    eval::Checker::new(ast, mode).run()
}
