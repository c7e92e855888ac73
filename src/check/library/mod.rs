//! The language's built-in functions and layer types, each a composition of
//! primitive ops. One entry per op: its signature (names, kinds, defaults),
//! what it builds, and its PyTorch equivalent (for the documentation).

mod functions;
mod layers;
mod losses;

use super::value::{ArgError, Args, Param, Value};
use super::Mode;
use crate::diag::{Diagnostic, Span};
use crate::ir::expr::SExpr;
use crate::ir::{Dim, Graph, NodeId, Origin, TensorType};
use crate::ops::{Init, Input, Map, Op, OpError, Param as ParamOp};
use crate::tensor::DType;
use std::collections::HashMap;
use std::fmt::Debug;

/// Why a library call failed.
#[derive(Debug)]
pub enum LibError {
    /// A problem with an argument (reported at the argument).
    Arg(ArgError),
    /// A shape or dtype rule (reported at the call).
    Op(OpError),
    /// A fully formed diagnostic (e.g. pointing at a layer's declaration too).
    Diag(Box<Diagnostic>),
}

impl From<ArgError> for LibError {
    fn from(e: ArgError) -> LibError {
        LibError::Arg(e)
    }
}

impl From<OpError> for LibError {
    fn from(e: OpError) -> LibError {
        LibError::Op(e)
    }
}

pub type LibResult<T> = Result<T, LibError>;

/// Model-wide state that library calls share.
#[derive(Debug, Default)]
pub struct ModelState {
    /// The i64 seed input that dropout masks hash (training graphs only).
    pub seed: Option<NodeId>,
    /// Distinguishes the masks of different dropout calls.
    pub dropout_calls: u32,
    /// Buffers updated by a training step: (buffer, its new value).
    pub state_updates: Vec<(NodeId, NodeId)>,
    /// (scores, class targets) of the last classification loss built, which
    /// the `accuracy` metric compares.
    pub classification: Option<(NodeId, NodeId)>,
    /// For values made by `flatten`, the sizes that were flattened into the
    /// last axis, so size errors can say `32 * 16 * 16` instead of `8192`.
    pub flattened: HashMap<NodeId, Vec<Dim>>,
}

/// What a library function or layer builds with.
pub struct Ctx<'a> {
    pub g: &'a mut Graph,
    pub state: &'a mut ModelState,
    pub origin: Origin,
    pub mode: Mode,
}

impl Ctx<'_> {
    pub fn add(&mut self, op: impl Into<Op>, operands: &[NodeId]) -> LibResult<NodeId> {
        Ok(self.g.add(op.into(), operands, self.origin.clone())?)
    }

    /// An elementwise node over float operands.
    pub fn map(&mut self, expr: SExpr, operands: &[NodeId]) -> LibResult<NodeId> {
        self.add(Map::new(expr, DType::F32), operands)
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        self.g.ty(id)
    }

    /// A parameter or buffer with a PyTorch `state_dict` name.
    pub fn param(&mut self, name: &str, shape: &[usize], init: Init, trainable: bool) -> NodeId {
        let dtype = DType::F32;
        self.param_typed(
            name,
            TensorType::new(dtype, shape.iter().map(|&d| Dim::from(d)).collect()),
            init,
            trainable,
        )
    }

    pub fn param_typed(&mut self, name: &str, ty: TensorType, init: Init, trainable: bool) -> NodeId {
        let op = ParamOp {
            name: name.to_string(),
            ty: ty.clone(),
            init,
            trainable,
        };
        self.g
            .add_typed(op.into(), &[], ty, Origin::new(name, self.origin.span.clone()))
    }

    /// The dropout seed input, created on first use.
    pub fn seed(&mut self) -> NodeId {
        if let Some(s) = self.state.seed {
            return s;
        }
        let ty = TensorType::scalar(DType::I64);
        let op = Input {
            name: SEED_INPUT.to_string(),
            ty: ty.clone(),
        };
        let id = self.g.add_typed(op.into(), &[], ty, Origin::named(SEED_INPUT));
        self.g.inputs.push(id);
        self.state.seed = Some(id);
        id
    }

    /// Checks that a tensor is floating point, for functions that compute on values.
    pub fn float_tensor(&self, what: &'static str, id: NodeId) -> LibResult<NodeId> {
        let ty = self.ty(id);
        if ty.dtype.is_float() {
            Ok(id)
        } else {
            Err(
                ArgError::at(what, format!("expected a floating-point tensor, found {ty}"))
                    .hint("integer tensors (token ids, labels) can be compared or used as indices, not computed with")
                    .into(),
            )
        }
    }

    /// An axis index, counting from the end when negative.
    pub fn axis(&self, param: &'static str, axis: i64, rank: usize) -> LibResult<usize> {
        let a = if axis < 0 { axis + rank as i64 } else { axis };
        usize::try_from(a).ok().filter(|&a| a < rank).ok_or_else(|| {
            ArgError::at(
                param,
                format!("axis {axis} is out of range for a tensor of rank {rank}"),
            )
            .hint(format!("valid axes are {} to {}", -(rank as i64), rank as i64 - 1))
            .into()
        })
    }
}

/// Name of the seed input that training graphs with dropout read.
pub const SEED_INPUT: &str = "dropout.seed";

/// A function of tensors (`relu`, `softmax`, `flatten`, ...).
pub struct Function {
    pub name: &'static str,
    /// Operand shapes to result shape, for the documentation.
    pub shapes: &'static str,
    pub params: &'static [Param],
    pub build: fn(&mut Ctx, &Args) -> LibResult<Value>,
    pub summary: &'static str,
    pub torch: &'static str,
}

/// A layer: declared once (`conv1 = Conv2d(...)`, creating its parameters),
/// applied any number of times (sharing them).
pub trait Layer: Debug {
    fn apply(&self, ctx: &mut Ctx, x: NodeId, use_span: &Span) -> LibResult<NodeId>;
}

/// Creates a layer's parameters under a prefix (`conv1`, `res1.a`).
pub type DeclareLayer = fn(&mut Ctx, &Args, &str, &Span) -> LibResult<Box<dyn Layer>>;

pub struct LayerType {
    pub name: &'static str,
    /// Input shape to output shape, for the documentation.
    pub shapes: &'static str,
    pub params: &'static [Param],
    /// Creates the layer's parameters under `prefix` (`conv1`, `res1.a`).
    pub declare: DeclareLayer,
    pub summary: &'static str,
    pub torch: &'static str,
}

pub fn function(name: &str) -> Option<&'static Function> {
    all_functions().find(|f| f.name == name)
}

pub fn layer_type(name: &str) -> Option<&'static LayerType> {
    layers::ALL.iter().find(|l| l.name == name)
}

pub fn all_functions() -> impl Iterator<Item = &'static Function> {
    functions::ALL.iter().chain(losses::ALL)
}

pub fn all_layer_types() -> &'static [LayerType] {
    layers::ALL
}

/// Every name the library defines, for "did you mean" hints.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    all_functions()
        .map(|f| f.name)
        .chain(layers::ALL.iter().map(|l| l.name))
}

/// Other names people reach for, mapped to the parameter netc uses.
pub const PARAM_ALIASES: &[(&str, &str)] = &[("kernel_size", "kernel"), ("axis", "dim")];

/// The elementwise building blocks that functions and operators share.
pub mod exprs {
    use crate::ir::expr::{arg, lit, SExpr};

    pub fn relu() -> SExpr {
        arg(0).max(lit(0.0))
    }

    pub fn leaky_relu(slope: f64) -> SExpr {
        SExpr::select(arg(0).gt(lit(0.0)), arg(0), lit(slope) * arg(0))
    }

    pub fn gelu_exact() -> SExpr {
        lit(0.5) * arg(0) * (lit(1.0) + (arg(0) * lit(std::f64::consts::FRAC_1_SQRT_2)).erf())
    }

    pub fn gelu_tanh() -> SExpr {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let inner = lit(k) * (arg(0) + lit(0.044715) * arg(0) * arg(0) * arg(0));
        lit(0.5) * arg(0) * (lit(1.0) + inner.tanh())
    }
}

/// The reference tables of docs/language.md (functions, losses, layers),
/// generated from the library itself so the documentation cannot drift.
pub fn reference_markdown() -> String {
    fn signature(params: &[Param]) -> String {
        use super::value::Default as D;
        params
            .iter()
            .map(|p| match p.default {
                D::Required => p.name.to_string(),
                _ => format!("{}: {}", p.name, p.show_default().trim_start_matches("= ")),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// One table; a row is (name, parameters, shapes, summary, PyTorch equivalent).
    type Row<'a> = (&'a str, &'a [Param], &'a str, &'a str, &'a str);
    fn table<'a>(kind: &str, rows: impl Iterator<Item = Row<'a>>) -> String {
        let mut out =
            format!("| {kind} | arguments (defaults) | shapes | computes | PyTorch |\n|---|---|---|---|---|\n");
        for (name, params, shapes, summary, torch) in rows {
            out += &format!(
                "| `{name}` | `{}` | {shapes} | {summary} | `{torch}` |\n",
                signature(params)
            );
        }
        out
    }
    let function_rows = |all: &'static [Function]| all.iter().map(|f| (f.name, f.params, f.shapes, f.summary, f.torch));
    [
        table("function", function_rows(functions::ALL)),
        table("loss", function_rows(losses::ALL)),
        table(
            "layer",
            layers::ALL
                .iter()
                .map(|l| (l.name, l.params, l.shapes, l.summary, l.torch)),
        ),
    ]
    .join("\n")
}
