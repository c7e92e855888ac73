//! Primitive ops. Each file holds one op family's whole story: its shape
//! rule (`infer`), its reference semantics (`eval`), its backward rule
//! (`backward`) and its lowering to kernels (`lower`). Surface functions of
//! the language (softmax, batch norm, losses) are compositions of these and
//! live in `check::library`.

mod conv;
mod leaf;
mod map;
mod matmul;
mod movement;
mod pool;
mod reduce;

pub use conv::{Conv2d, Conv2dGradInput, Conv2dGradWeight, ConvGeometry};
pub use leaf::{Detach, Init, Input, Param};
pub use map::{compact_operands, Map};
pub use matmul::MatMul;
pub use movement::{Concat, Expand, Pad, Permute, Reshape, Slice};
pub use pool::{Pool2d, Pool2dGrad, PoolKind};
pub use reduce::{Reduce, ReduceKind};

use crate::autodiff::AdCtx;
use crate::codegen::ctx::{CodegenError, Coords, KernelCtx, Value};
use crate::ir::{NodeId, TensorType};
use crate::reference::{Real, RefTensor};
use std::collections::HashMap;
use std::fmt;

/// A shape or dtype rule was violated. `hint` suggests a fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    pub message: String,
    pub hint: Option<String>,
}

impl OpError {
    pub fn new(message: impl Into<String>) -> OpError {
        OpError {
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> OpError {
        self.hint = Some(hint.into());
        self
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// How fusion treats an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusionRole {
    /// Inputs and parameters: buffers supplied from outside.
    Leaf,
    /// Elementwise or movement: computed inside the kernels that read it.
    Inline,
    /// Needs a loop nest of its own (reductions, products, windows).
    Anchor,
}

/// What every primitive provides.
pub trait Primitive {
    /// Name shown in graphs and kernel comments.
    fn name(&self) -> &'static str;

    /// Attributes shown next to the name (`stride=2, padding=1`).
    fn attrs(&self) -> String {
        String::new()
    }

    /// The output type from the operand types, or why they do not fit.
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType>;

    /// The output value on concrete operands: plain loops, the oracle that
    /// every generated kernel is checked against.
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T>;

    /// Gradients of the operands, given the gradient `grad` of this node's
    /// output, built as new nodes in the same graph. `None`: no gradient flows.
    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>>;

    fn fusion_role(&self) -> FusionRole;

    /// For `Inline` ops: the value at coordinates `at` of the output, built
    /// from operand values that `k.value_at` provides.
    fn inline_value(&self, _k: &mut KernelCtx, _node: NodeId, _at: &Coords) -> Value {
        panic!("internal: `{}` is not an inline op", self.name())
    }

    /// For `Anchor` ops: emits the kernel body that computes this node and
    /// stores the kernel's root (through `k.store_root`) for every element.
    fn lower(&self, _k: &mut KernelCtx, _node: NodeId) -> Result<(), CodegenError> {
        Err(CodegenError::Internal(format!(
            "`{}` has no kernel of its own",
            self.name()
        )))
    }

    /// The op with symbolic sizes in its attributes replaced by values.
    fn bind_dims(&self, _bindings: &HashMap<String, i64>) -> Self
    where
        Self: Sized + Clone,
    {
        self.clone()
    }
}

macro_rules! ops {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A primitive op with its attributes.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op { $($variant($ty)),* }

        impl Op {
            pub fn name(&self) -> &'static str { match self { $(Op::$variant(o) => o.name()),* } }
            pub fn attrs(&self) -> String { match self { $(Op::$variant(o) => o.attrs()),* } }
            pub fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
                match self { $(Op::$variant(o) => o.infer(inputs)),* }
            }
            pub fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
                match self { $(Op::$variant(o) => o.eval(inputs, out)),* }
            }
            pub fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
                match self { $(Op::$variant(o) => o.backward(ad, node, grad)),* }
            }
            pub fn fusion_role(&self) -> FusionRole { match self { $(Op::$variant(o) => o.fusion_role()),* } }
            pub fn inline_value(&self, k: &mut KernelCtx, node: NodeId, at: &Coords) -> Value {
                match self { $(Op::$variant(o) => o.inline_value(k, node, at)),* }
            }
            pub fn lower(&self, k: &mut KernelCtx, node: NodeId) -> Result<(), CodegenError> {
                match self { $(Op::$variant(o) => o.lower(k, node)),* }
            }
            pub fn bind_dims(&self, bindings: &HashMap<String, i64>) -> Op {
                match self { $(Op::$variant(o) => Op::$variant(o.bind_dims(bindings))),* }
            }
        }
        $(impl From<$ty> for Op { fn from(o: $ty) -> Op { Op::$variant(o) } })*
    };
}

ops! {
    Input(Input),
    Param(Param),
    Detach(Detach),
    Map(Map),
    Reduce(Reduce),
    Reshape(Reshape),
    Permute(Permute),
    Expand(Expand),
    Slice(Slice),
    Pad(Pad),
    Concat(Concat),
    MatMul(MatMul),
    Conv2d(Conv2d),
    Conv2dGradInput(Conv2dGradInput),
    Conv2dGradWeight(Conv2dGradWeight),
    Pool2d(Pool2d),
    Pool2dGrad(Pool2dGrad),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attrs = self.attrs();
        if attrs.is_empty() {
            f.write_str(self.name())
        } else {
            write!(f, "{}({attrs})", self.name())
        }
    }
}

/// Checks the operand count, for `infer`.
pub(crate) fn expect_arity(name: &str, inputs: &[&TensorType], n: usize) -> OpResult<()> {
    if inputs.len() == n {
        Ok(())
    } else {
        Err(OpError::new(format!(
            "`{name}` takes {n} operand(s), got {}",
            inputs.len()
        )))
    }
}

/// Checks that an operand is floating point.
pub(crate) fn expect_float(name: &str, what: &str, ty: &TensorType) -> OpResult<()> {
    if ty.dtype.is_float() {
        Ok(())
    } else {
        Err(
            OpError::new(format!("`{name}` needs a floating-point {what}, got {ty}"))
                .with_hint("integer tensors (token ids, labels) can only index or be compared"),
        )
    }
}

/// An error for a backward rule that does not exist (second derivatives).
pub(crate) fn no_backward(name: &str) -> OpError {
    OpError::new(format!(
        "`{name}` has no backward rule (second derivatives are not supported)"
    ))
}
