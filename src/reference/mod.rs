//! The reference evaluator: the IR run with plain Rust loops, in f32 or f64.
//! It is the oracle that both devices are checked against, and the function
//! that finite-difference gradient checks differentiate. Each op's
//! semantics live in its own file under `ops` (`Primitive::eval`); this
//! module walks the graph and owns the tensor type they compute on.

use crate::ir::{Graph, NodeId};
use crate::ops::Op;
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;
use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// f32 or f64.
pub trait Real:
    Copy
    + Default
    + PartialOrd
    + Debug
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
}

impl Real for f32 {
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// A dense row-major tensor of reals (integer tensors hold whole numbers).
#[derive(Clone, Debug, PartialEq)]
pub struct RefTensor<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T: Real> RefTensor<T> {
    pub fn zeros(shape: &[usize]) -> Self {
        RefTensor {
            shape: shape.to_vec(),
            data: vec![T::zero(); shape.iter().product()],
        }
    }

    pub fn from_fn(shape: &[usize], mut f: impl FnMut(&[usize]) -> T) -> Self {
        let mut coords = vec![0; shape.len()];
        let n: usize = shape.iter().product();
        let mut data = Vec::with_capacity(n);
        for flat in 0..n {
            unravel_into(flat, shape, &mut coords);
            data.push(f(&coords));
        }
        RefTensor {
            shape: shape.to_vec(),
            data,
        }
    }

    pub fn from_tensor(t: &Tensor) -> Self {
        RefTensor {
            shape: t.shape.clone(),
            data: t.to_f64_vec().into_iter().map(T::from_f64).collect(),
        }
    }

    pub fn to_tensor(&self, dtype: DType) -> Tensor {
        Tensor::f64(self.shape.clone(), self.data.iter().map(|v| v.to_f64()).collect()).cast(dtype)
    }

    pub fn at(&self, coords: &[usize]) -> T {
        self.data[ravel(coords, &self.shape)]
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Row-major flat index of coordinates.
pub fn ravel(coords: &[usize], shape: &[usize]) -> usize {
    coords.iter().zip(shape).fold(0, |acc, (&c, &n)| acc * n + c)
}

/// Coordinates of a row-major flat index.
pub fn unravel_into(mut flat: usize, shape: &[usize], coords: &mut [usize]) {
    for axis in (0..shape.len()).rev() {
        coords[axis] = flat % shape[axis];
        flat /= shape[axis];
    }
}

/// Flat index into an operand broadcast (numpy rules, right-aligned) to `out_coords`.
pub fn broadcast_index(out_coords: &[usize], shape: &[usize]) -> usize {
    let offset = out_coords.len() - shape.len();
    shape.iter().enumerate().fold(0, |acc, (axis, &n)| {
        acc * n + if n == 1 { 0 } else { out_coords[offset + axis] }
    })
}

/// Why evaluation could not start.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("the graph still has unbound sizes: {0}")]
    Unbound(String),
    #[error("no value given for {kind} `{name}`")]
    Missing { kind: &'static str, name: String },
    #[error("{kind} `{name}` should have shape {expected:?}, got {got:?}")]
    Shape {
        kind: &'static str,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
}

/// Evaluates every node of a specialised graph. `leaves` gives inputs and
/// params by name. Returns the value of every node, indexed by node id.
pub fn evaluate<T: Real>(
    graph: &Graph,
    leaves: &HashMap<String, RefTensor<T>>,
) -> Result<Vec<RefTensor<T>>, EvalError> {
    let mut values: Vec<RefTensor<T>> = Vec::with_capacity(graph.len());
    for id in graph.topo_order() {
        let node = graph.node(id);
        let dims = node
            .ty
            .dims()
            .ok_or_else(|| EvalError::Unbound(node.origin.name.clone()))?;
        let value = match &node.op {
            Op::Input(i) => leaf(leaves, "input", &i.name, &dims)?,
            Op::Param(p) => leaf(leaves, "parameter", &p.name, &dims)?,
            op => {
                let operands: Vec<&RefTensor<T>> = graph.operands(id).iter().map(|o| &values[o.index()]).collect();
                op.eval(&operands, &dims)
            }
        };
        values.push(value);
    }
    Ok(values)
}

fn leaf<T: Real>(
    leaves: &HashMap<String, RefTensor<T>>,
    kind: &'static str,
    name: &str,
    dims: &[usize],
) -> Result<RefTensor<T>, EvalError> {
    let t = leaves.get(name).ok_or_else(|| EvalError::Missing {
        kind,
        name: name.to_string(),
    })?;
    if t.shape != dims {
        return Err(EvalError::Shape {
            kind,
            name: name.to_string(),
            expected: dims.to_vec(),
            got: t.shape.clone(),
        });
    }
    Ok(t.clone())
}

/// The value of a node after [`evaluate`].
pub fn value_of<T>(values: &[RefTensor<T>], id: NodeId) -> &RefTensor<T> {
    &values[id.index()]
}
