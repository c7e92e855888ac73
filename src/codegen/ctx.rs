//! The state of one kernel under construction, and the inliner: `value_at`
//! produces the value of any node at given coordinates, loading it from its
//! buffer or recomputing it from its operands when fusion inlined it.

use super::kir::{self, cast, int, load, AssignOp, CTy, KExpr, KParam, KStmt};
use super::Target;
use crate::ir::{Graph, NodeId};
use crate::passes::fusion::{Fusion, Placement};
use crate::tensor::DType;
use std::collections::{BTreeSet, HashMap};

/// A value in generated code and its C type.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub expr: KExpr,
    pub ty: CTy,
}

impl Value {
    pub fn new(expr: KExpr, ty: CTy) -> Value {
        Value { expr, ty }
    }

    pub fn f32(expr: KExpr) -> Value {
        Value { expr, ty: CTy::F32 }
    }

    /// The value as a float for arithmetic.
    pub fn to_f32(&self) -> KExpr {
        match self.ty {
            CTy::F32 => self.expr.clone(),
            CTy::Bool => kir::select(self.expr.clone(), kir::f32c(1.0), kir::f32c(0.0)),
            _ => cast(CTy::F32, self.expr.clone()),
        }
    }

    /// The value as a condition.
    pub fn to_bool(&self) -> KExpr {
        match self.ty {
            CTy::Bool => self.expr.clone(),
            CTy::F32 => KExpr::bin(kir::BinOp::Ne, self.expr.clone(), kir::f32c(0.0)),
            _ => KExpr::bin(kir::BinOp::Ne, self.expr.clone(), int(0)),
        }
    }
}

/// Coordinates of one element: per-axis index expressions, and when known
/// the row-major flat index they came from (so same-shape reads index with
/// it directly instead of re-linearising).
#[derive(Clone, Debug)]
pub struct Coords {
    pub axes: Vec<KExpr>,
    flat: Option<(KExpr, Vec<usize>)>,
}

impl Coords {
    pub fn from_axes(axes: Vec<KExpr>) -> Coords {
        Coords { axes, flat: None }
    }

    /// The coordinates of flat index `i` in `shape`.
    pub fn from_flat(i: KExpr, shape: &[usize]) -> Coords {
        let mut axes = Vec::with_capacity(shape.len());
        let mut stride: usize = shape.iter().product();
        for (a, &n) in shape.iter().enumerate() {
            stride /= n.max(1);
            axes.push(if n == 1 {
                int(0)
            } else if a == 0 {
                i.clone() / stride as i64
            } else {
                (i.clone() / stride as i64).modulo(int(n as i64))
            });
        }
        Coords {
            axes,
            flat: Some((i, shape.to_vec())),
        }
    }

    /// Row-major flat index in `shape` (size-1 axes contribute nothing).
    pub fn linear(&self, shape: &[usize]) -> KExpr {
        if let Some((i, s)) = &self.flat {
            if s == shape {
                return i.clone();
            }
        }
        let mut idx = int(0);
        for (a, &n) in shape.iter().enumerate() {
            if n != 1 {
                idx = idx * n as i64 + self.axes[a].clone();
            }
        }
        idx
    }

    /// Coordinates in an operand broadcast (numpy rules) to this shape.
    pub fn broadcast(&self, from: &[usize], to: &[usize]) -> Coords {
        if from == to {
            return self.clone();
        }
        let offset = to.len() - from.len();
        let axes = from
            .iter()
            .enumerate()
            .map(|(a, &n)| if n == 1 { int(0) } else { self.axes[offset + a].clone() })
            .collect();
        Coords::from_axes(axes)
    }

    fn key(&self) -> String {
        match &self.flat {
            Some((i, s)) => format!("{i:?}/{s:?}"),
            None => format!("{:?}", self.axes),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("kernels compute in f32 and i64; `{0}` has dtype f64")]
    UnsupportedDtype(String),
    #[error("`{0}` has {1} elements, more than a kernel indexes with 32-bit integers")]
    TooLarge(String, usize),
    #[error("internal: {0}")]
    Internal(String),
}

struct Scope {
    stmts: Vec<KStmt>,
    memo: HashMap<String, Value>,
}

pub struct KernelCtx<'a> {
    pub graph: &'a Graph,
    pub fusion: &'a Fusion,
    pub target: Target,
    pub root: NodeId,
    scopes: Vec<Scope>,
    bound: HashMap<NodeId, Value>,
    params: Vec<(NodeId, KParam)>,
    temps: usize,
    index_names: HashMap<String, usize>,
    /// Nodes computed in this kernel (for its comment).
    pub covered: BTreeSet<NodeId>,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub cooperative: bool,
}

/// The C type that holds a dtype in buffers.
pub fn c_type(dtype: DType) -> CTy {
    match dtype {
        DType::I64 => CTy::I64,
        DType::F32 | DType::F64 => CTy::F32,
    }
}

/// A C identifier from a node name (`conv1.weight` → `conv1_weight`,
/// `d(relu)` → `d_relu`).
pub fn sanitize(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    let s = s.trim_matches('_').to_string();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("v{s}")
    } else {
        s
    }
}

impl<'a> KernelCtx<'a> {
    pub fn new(graph: &'a Graph, fusion: &'a Fusion, target: Target, root: NodeId) -> KernelCtx<'a> {
        let out = KParam {
            name: "out".into(),
            ty: c_type(graph.ty(root).dtype),
            is_const: false,
        };
        KernelCtx {
            graph,
            fusion,
            target,
            root,
            scopes: vec![Scope {
                stmts: Vec::new(),
                memo: HashMap::new(),
            }],
            bound: HashMap::new(),
            params: vec![(root, out)],
            temps: 0,
            index_names: HashMap::new(),
            covered: BTreeSet::from([root]),
            grid: [1, 1, 1],
            block: [1, 1, 1],
            cooperative: false,
        }
    }

    /// Concrete sizes of a node.
    pub fn dims(&self, id: NodeId) -> Vec<usize> {
        self.graph
            .ty(id)
            .dims()
            .unwrap_or_else(|| panic!("codegen needs a specialised graph (node %{})", id.index()))
    }

    /// The kernel parameter naming the buffer that holds `id`.
    pub fn buffer(&mut self, id: NodeId) -> String {
        let owner = self.fusion.buffer_of(id).unwrap_or(id);
        if let Some((_, p)) = self.params.iter().find(|(n, _)| *n == owner) {
            return p.name.clone();
        }
        let node = self.graph.node(owner);
        let base = match &node.op {
            crate::ops::Op::Input(i) => sanitize(&i.name),
            crate::ops::Op::Param(p) => sanitize(&p.name),
            _ => format!("{}_{}", sanitize(&node.origin.name), owner.index()),
        };
        let name = if base == "out" || self.params.iter().any(|(_, p)| p.name == base) {
            format!("{base}_{}", owner.index())
        } else {
            base
        };
        self.params.push((
            owner,
            KParam {
                name: name.clone(),
                ty: c_type(node.ty.dtype),
                is_const: true,
            },
        ));
        name
    }

    pub fn emit(&mut self, s: KStmt) {
        self.scopes.last_mut().expect("a scope is always open").stmts.push(s);
    }

    pub fn push_scope(&mut self) {
        self.scopes.push(Scope {
            stmts: Vec::new(),
            memo: HashMap::new(),
        });
    }

    pub fn pop_scope(&mut self) -> Vec<KStmt> {
        self.scopes.pop().expect("scopes are balanced").stmts
    }

    /// Names an integer index expression (`const int iy = ...;`) so that
    /// generated index arithmetic reads like hand-written code. Names are
    /// unique within the kernel (`iy`, `iy_1`, ...).
    pub fn index(&mut self, name: &str, value: KExpr) -> KExpr {
        if matches!(value, KExpr::Var(_) | KExpr::Int(_)) {
            return value;
        }
        let count = self.index_names.entry(name.to_string()).or_insert(0);
        let unique = if *count == 0 {
            name.to_string()
        } else {
            format!("{name}_{count}")
        };
        *count += 1;
        self.constant(&unique, CTy::I32, value)
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.temps += 1;
        format!("{prefix}{}", self.temps - 1)
    }

    /// Names a computed value (`const float t3 = ...;`) unless it is already trivial.
    pub fn name_value(&mut self, v: Value) -> Value {
        if matches!(v.expr, KExpr::Var(_) | KExpr::Int(_) | KExpr::F32(_)) {
            return v;
        }
        let name = self.fresh("t");
        self.emit(KStmt::Let {
            ty: v.ty,
            name: name.clone(),
            value: v.expr,
            mutable: false,
        });
        Value::new(kir::var(name), v.ty)
    }

    /// A mutable local (`float acc0 = init;`).
    pub fn mutable(&mut self, prefix: &str, ty: CTy, init: KExpr) -> KExpr {
        let name = self.fresh(prefix);
        self.emit(KStmt::Let {
            ty,
            name: name.clone(),
            value: init,
            mutable: true,
        });
        kir::var(name)
    }

    /// A named constant (`const int n = ...;`), for readable index math.
    pub fn constant(&mut self, name: &str, ty: CTy, value: KExpr) -> KExpr {
        self.emit(KStmt::Let {
            ty,
            name: name.to_string(),
            value,
            mutable: false,
        });
        kir::var(name)
    }

    pub fn assign(&mut self, target: KExpr, op: AssignOp, value: KExpr) {
        self.emit(KStmt::Assign { target, op, value });
    }

    /// Makes `node` evaluate to `value` (an anchor's result, for its epilogue).
    pub fn bind(&mut self, node: NodeId, value: Value) {
        self.covered.insert(node);
        self.bound.insert(node, value);
    }

    /// Loads `id` from its buffer at coordinates in its own shape.
    pub fn load_buffer(&mut self, id: NodeId, at: &Coords) -> Value {
        let name = self.buffer(id);
        let idx = at.linear(&self.dims(id));
        Value::new(load(name, idx), c_type(self.graph.ty(id).dtype))
    }

    /// The value of `id` at coordinates in its own shape.
    pub fn value_at(&mut self, id: NodeId, at: &Coords) -> Value {
        if let Some(v) = self.bound.get(&id) {
            return v.clone();
        }
        let key = format!("{}@{}", id.index(), at.key());
        if let Some(v) = self.scopes.iter().rev().find_map(|s| s.memo.get(&key)) {
            return v.clone();
        }
        let v = match self.fusion.placement(id) {
            Placement::Inline => {
                self.covered.insert(id);
                let op = self.graph.op(id).clone();
                op.inline_value(self, id, at)
            }
            _ => self.load_buffer(id, at),
        };
        let v = self.name_value(v);
        self.scopes
            .last_mut()
            .expect("a scope is always open")
            .memo
            .insert(key, v.clone());
        v
    }

    /// Evaluates the kernel's root at `at` (with any anchor already bound) and stores it.
    pub fn store_root(&mut self, at: &Coords) {
        let root = self.root;
        let shape = self.dims(root);
        let v = if let Some(b) = self.bound.get(&root) {
            b.clone()
        } else {
            self.value_at_root(at)
        };
        let out_ty = c_type(self.graph.ty(root).dtype);
        let value = if v.ty == out_ty {
            v.expr
        } else if out_ty == CTy::F32 {
            v.to_f32()
        } else {
            cast(out_ty, v.expr)
        };
        self.assign(load("out", at.linear(&shape)), AssignOp::Set, value);
    }

    fn value_at_root(&mut self, at: &Coords) -> Value {
        let root = self.root;
        self.covered.insert(root);
        let op = self.graph.op(root).clone();
        let v = op.inline_value(self, root, at);
        self.name_value(v)
    }

    pub fn finish(mut self, name: String, doc: Vec<String>) -> kir::Kernel {
        let body = self.scopes.pop().map(|s| s.stmts).unwrap_or_default();
        kir::Kernel {
            name,
            doc,
            params: self.params.into_iter().map(|(_, p)| p).collect(),
            body,
            grid: self.grid,
            block: self.block,
            cooperative: self.cooperative,
        }
    }

    /// The buffers this kernel reads and writes, by node (the output first).
    pub fn param_nodes(&self) -> Vec<NodeId> {
        self.params.iter().map(|(n, _)| *n).collect()
    }
}
