//! Leaves (data inputs and parameters) and `detach`, which stops gradients.

use super::{expect_arity, FusionRole, OpResult, Primitive};
use crate::autodiff::AdCtx;
use crate::codegen::ctx::{Coords, KernelCtx, Value};
use crate::ir::{NodeId, TensorType};
use crate::reference::{Real, RefTensor};

/// A data input (`input image: f32[B, 3, 32, 32]`), bound at run time.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    pub ty: TensorType,
}

/// How a parameter starts, following PyTorch's `reset_parameters`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(-bound, bound): PyTorch's default for conv and linear weights and biases.
    Uniform(f64),
    /// N(0, std²): PyTorch's default for embeddings.
    Normal(f64),
    Const(f64),
}

/// A parameter (`conv1.weight`) or a buffer (`bn.running_mean`), named as in
/// PyTorch's `state_dict`.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub ty: TensorType,
    pub init: Init,
    /// Buffers (running statistics, counters) are state, not trained.
    pub trainable: bool,
}

impl Param {
    /// A fresh value drawn as PyTorch's `reset_parameters` would (the same
    /// distributions; PyTorch's own random stream cannot be reproduced).
    pub fn initial_value(&self, rng: &mut crate::rng::Rng) -> crate::tensor::Tensor {
        let dims = self.ty.dims().unwrap_or_default();
        let n: usize = dims.iter().product();
        let values: Vec<f64> = (0..n)
            .map(|_| match self.init {
                Init::Uniform(bound) => rng.range(-bound, bound),
                Init::Normal(std) => rng.normal() * std,
                Init::Const(v) => v,
            })
            .collect();
        crate::tensor::Tensor::f64(dims, values).cast(self.ty.dtype)
    }
}

macro_rules! leaf {
    ($t:ty, $name:literal) => {
        impl Primitive for $t {
            fn name(&self) -> &'static str {
                $name
            }
            fn attrs(&self) -> String {
                self.name.clone()
            }
            fn fusion_role(&self) -> FusionRole {
                FusionRole::Leaf
            }
            fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
                expect_arity($name, inputs, 0)?;
                Ok(self.ty.clone())
            }
            fn eval<T: Real>(&self, _: &[&RefTensor<T>], _: &[usize]) -> RefTensor<T> {
                unreachable!("the evaluator binds leaves itself")
            }
            fn backward(&self, _: &mut AdCtx, _: NodeId, _: NodeId) -> OpResult<Vec<Option<NodeId>>> {
                Ok(Vec::new())
            }
            fn bind_dims(&self, bindings: &std::collections::HashMap<String, i64>) -> Self {
                let mut out = self.clone();
                for d in &mut out.ty.shape {
                    *d = d.bind(bindings);
                }
                out
            }
        }
    };
}
leaf!(Input, "input");
leaf!(Param, "param");

/// Identity forward, no gradient backward: marks values (like the max that
/// softmax subtracts for stability) whose gradient is known to cancel.
#[derive(Clone, Debug, PartialEq)]
pub struct Detach;

impl Primitive for Detach {
    fn name(&self) -> &'static str {
        "detach"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Inline
    }
    fn inline_value(&self, k: &mut KernelCtx, node: NodeId, at: &Coords) -> Value {
        let x = k.graph.operands(node)[0];
        k.value_at(x, at)
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity("detach", inputs, 1)?;
        Ok(inputs[0].clone())
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], _: &[usize]) -> RefTensor<T> {
        inputs[0].clone()
    }
    fn backward(&self, _: &mut AdCtx, _: NodeId, _: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        Ok(vec![None])
    }
}
