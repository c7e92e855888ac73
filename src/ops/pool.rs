//! 2-D max and average pooling (PyTorch semantics: padding, dilation for max,
//! ceil_mode, count_include_pad for average) and their gradient.

use super::{expect_arity, expect_float, no_backward, FusionRole, OpError, OpResult, Primitive};
use crate::autodiff::AdCtx;
use crate::codegen::ctx::{CodegenError, Coords, KernelCtx, Value};
use crate::codegen::kir::{call, cast, f32c, int, load, var, AssignOp, CTy, KExpr, KStmt, LoopHint};
use crate::codegen::templates::for_each_output;
use crate::ir::{Dim, NodeId, TensorType};
use crate::reference::{Real, RefTensor};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

/// The input rows (or columns) one output position pools over.
pub struct Window {
    /// First input index read, possibly negative (padding).
    pub start: isize,
    pub step: usize,
    pub taps: usize,
    /// Average pooling's divisor part along this axis.
    pub divisor: usize,
}

impl Pool2d {
    /// Output size along axis `a` for input size `n` (PyTorch's formula).
    pub fn out_size(&self, a: usize, n: &Dim) -> OpResult<Dim> {
        let (k, s, p, d) = (self.kernel[a], self.stride[a], self.padding[a], self.dilation[a]);
        if 2 * p > k {
            return Err(OpError::new(format!(
                "pooling padding {p} must be at most half the kernel size {k}"
            )));
        }
        let reach = (d * (k - 1) + 1) as i64;
        let Some(len) = n.as_const() else {
            if self.ceil_mode {
                return Err(OpError::new(format!(
                    "ceil_mode pooling needs a concrete size, got {n}"
                )));
            }
            let span = n.add(&Dim::lit(2 * p as i64 - reach));
            return span
                .floor_div(s as i64)
                .map(|q| q.add(&Dim::lit(1)))
                .ok_or_else(|| OpError::new(format!("pooled size ({span}) / {s} + 1 is not whole for every {n}")));
        };
        let span = len + 2 * p as i64 - reach;
        if span < 0 {
            return Err(OpError::new(format!(
                "the {} size {len} is smaller than the pooling window {reach}",
                ["height", "width"][a]
            ))
            .with_hint("pool less often, or pad the input"));
        }
        let s = s as i64;
        let mut out = if self.ceil_mode {
            (span + s - 1) / s + 1
        } else {
            span / s + 1
        };
        // A window must start inside the input or its left padding.
        if self.ceil_mode && (out - 1) * s >= len + p as i64 {
            out -= 1;
        }
        Ok(Dim::lit(out))
    }

    pub fn window(&self, a: usize, o: usize, n: usize) -> Window {
        let (k, s, p, d) = (
            self.kernel[a],
            self.stride[a],
            self.padding[a] as isize,
            self.dilation[a],
        );
        let start = (o * s) as isize - p;
        let end_padded = (start + k as isize).min(n as isize + p);
        let divisor = if self.count_include_pad {
            (end_padded - start) as usize
        } else {
            (start.max(0)..(start + k as isize).min(n as isize)).count()
        };
        Window {
            start,
            step: d,
            taps: k,
            divisor,
        }
    }

    /// Visits every pooling window: (flat output index, the flat input
    /// indices inside the window, divisor).
    fn for_each_window(&self, x: &[usize], y: &[usize], mut f: impl FnMut(usize, &[usize], usize)) {
        let (h, w) = (x[2], x[3]);
        let mut taps = Vec::with_capacity(self.kernel[0] * self.kernel[1]);
        for plane in 0..x[0] * x[1] {
            for oy in 0..y[2] {
                let wy = self.window(0, oy, h);
                for ox in 0..y[3] {
                    let wx = self.window(1, ox, w);
                    taps.clear();
                    for ky in 0..wy.taps {
                        let iy = wy.start + (ky * wy.step) as isize;
                        for kx in 0..wx.taps {
                            let ix = wx.start + (kx * wx.step) as isize;
                            if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                taps.push((plane * h + iy as usize) * w + ix as usize);
                            }
                        }
                    }
                    f((plane * y[2] + oy) * y[3] + ox, &taps, wy.divisor * wx.divisor);
                }
            }
        }
    }

    /// Index of the first maximum in the window, as PyTorch picks it.
    fn argmax<T: Real>(x: &RefTensor<T>, taps: &[usize]) -> Option<usize> {
        taps.iter()
            .copied()
            .reduce(|best, i| if x.data[i] > x.data[best] { i } else { best })
    }
}

impl Primitive for Pool2d {
    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "max_pool2d",
            PoolKind::Avg => "avg_pool2d",
        }
    }
    fn attrs(&self) -> String {
        let mut s = format!("kernel={:?}, stride={:?}", self.kernel, self.stride);
        if self.padding != [0, 0] {
            s += &format!(", padding={:?}", self.padding);
        }
        if self.dilation != [1, 1] {
            s += &format!(", dilation={:?}", self.dilation);
        }
        if self.ceil_mode {
            s += ", ceil_mode";
        }
        if self.kind == PoolKind::Avg && !self.count_include_pad {
            s += ", count_include_pad=false";
        }
        s
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Anchor
    }
    fn lower(&self, k: &mut KernelCtx, node: NodeId) -> Result<(), CodegenError> {
        let x = k.graph.operands(node)[0];
        let (xs, ys) = (k.dims(x), k.dims(node));
        let xb = k.buffer(x);
        let n_out: usize = ys.iter().product();
        for_each_output(k, n_out, self.kernel[0] * self.kernel[1], |k, i| {
            let at = Coords::from_flat(i.clone(), &ys);
            let plane = k.constant("plane", CTy::I32, i / (ys[2] * ys[3]) as i64);
            let (oy, ox) = (at.axes[2].clone(), at.axes[3].clone());
            let value = self.window_value(k, &xb, &xs, &plane, &oy, &ox);
            k.bind(node, value);
            k.store_root(&at);
        });
        Ok(())
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity(self.name(), inputs, 1)?;
        let x = inputs[0];
        expect_float(self.name(), "input", x)?;
        if x.rank() != 4 {
            return Err(OpError::new(format!(
                "{} expects an NCHW input of rank 4, got {x}",
                self.name()
            )));
        }
        let ho = self.out_size(0, &x.shape[2])?;
        let wo = self.out_size(1, &x.shape[3])?;
        Ok(TensorType::new(
            x.dtype,
            vec![x.shape[0].clone(), x.shape[1].clone(), ho, wo],
        ))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let x = inputs[0];
        let mut y = RefTensor::zeros(out);
        self.for_each_window(&x.shape, out, |yi, taps, divisor| {
            y.data[yi] = match self.kind {
                PoolKind::Max => Self::argmax(x, taps).map_or(T::zero(), |i| x.data[i]),
                PoolKind::Avg => {
                    let sum = taps.iter().fold(T::zero(), |acc, &i| acc + x.data[i]);
                    sum / T::from_f64(divisor as f64)
                }
            }
        });
        y
    }
    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let x = ad.g.operands(node)[0];
        let shape = ad.ty(x).shape.clone();
        let op = Pool2dGrad {
            pool: self.clone(),
            input_hw: [shape[2].clone(), shape[3].clone()],
        };
        let operands = match self.kind {
            PoolKind::Max => vec![grad, x],
            PoolKind::Avg => vec![grad],
        };
        Ok(vec![Some(ad.add(op, &operands)?)])
    }
}

/// d loss / d input of a pooling: (grad of output, input for max pooling).
#[derive(Clone, Debug, PartialEq)]
pub struct Pool2dGrad {
    pub pool: Pool2d,
    pub input_hw: [Dim; 2],
}

impl Primitive for Pool2dGrad {
    fn name(&self) -> &'static str {
        match self.pool.kind {
            PoolKind::Max => "max_pool2d_grad",
            PoolKind::Avg => "avg_pool2d_grad",
        }
    }
    fn attrs(&self) -> String {
        self.pool.attrs()
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Anchor
    }
    fn lower(&self, k: &mut KernelCtx, node: NodeId) -> Result<(), CodegenError> {
        let ops = k.graph.operands(node);
        let (gs, xs) = (k.dims(ops[0]), k.dims(node));
        let gy = k.buffer(ops[0]);
        let x = if self.pool.kind == PoolKind::Max {
            Some(k.buffer(ops[1]))
        } else {
            None
        };
        let n: usize = xs.iter().product();
        let taps = self.pool.kernel[0] * self.pool.kernel[1];
        for_each_output(k, n, taps * taps, |k, i| {
            let at = Coords::from_flat(i.clone(), &xs);
            let plane = k.constant("plane", CTy::I32, i / (xs[2] * xs[3]) as i64);
            let (iy, ix) = (at.axes[2].clone(), at.axes[3].clone());
            let acc = k.mutable("acc", CTy::F32, f32c(0.0));
            let mut ranges = Vec::new();
            for (a, (pos, size)) in [(iy.clone(), gs[2]), (ix.clone(), gs[3])].into_iter().enumerate() {
                ranges.push(self.pool.windows_covering(k, a, pos, size));
            }
            k.push_scope();
            let (oy, ox) = (var("oy"), var("ox"));
            // With dilation the pixel lies on a window's grid only at multiples of it.
            let mut on_grid = KExpr::bool(true);
            for (a, (pos, o)) in [(iy.clone(), oy.clone()), (ix.clone(), ox.clone())]
                .into_iter()
                .enumerate()
            {
                let dilation = self.pool.dilation[a] as i64;
                if dilation > 1 {
                    let t = pos + self.pool.padding[a] as i64 - o * self.pool.stride[a] as i64;
                    on_grid = on_grid.and(t.modulo(int(dilation)).eq(int(0)));
                }
            }
            let g = load(
                gy.clone(),
                (plane.clone() * gs[2] as i64 + oy.clone()) * gs[3] as i64 + ox.clone(),
            );
            k.push_scope();
            match &x {
                Some(xb) => {
                    let best = self.pool.argmax_position(k, xb, &xs, &plane, &oy, &ox);
                    let mine = iy.clone() * xs[3] as i64 + ix.clone();
                    let add = KStmt::Assign {
                        target: acc.clone(),
                        op: AssignOp::Add,
                        value: g,
                    };
                    k.emit(KStmt::If {
                        cond: best.eq(mine),
                        then: vec![add],
                        otherwise: vec![],
                    });
                }
                None => {
                    let divisor = self.pool.divisor(k, &xs, &oy, &ox);
                    k.assign(acc.clone(), AssignOp::Add, g / divisor);
                }
            }
            let contribution = k.pop_scope();
            if on_grid.is_int(1) {
                contribution.into_iter().for_each(|s| k.emit(s));
            } else {
                k.emit(KStmt::If {
                    cond: on_grid,
                    then: contribution,
                    otherwise: vec![],
                });
            }
            let body = k.pop_scope();
            let (ry, rx) = (ranges[0].clone(), ranges[1].clone());
            let inner = KStmt::For {
                var: "ox".into(),
                start: rx.0,
                end: rx.1,
                step: int(1),
                body,
                hint: LoopHint::Compiler,
            };
            k.emit(KStmt::For {
                var: "oy".into(),
                start: ry.0,
                end: ry.1,
                step: int(1),
                body: vec![inner],
                hint: LoopHint::Compiler,
            });
            k.bind(node, Value::f32(acc));
            k.store_root(&at);
        });
        Ok(())
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        let arity = if self.pool.kind == PoolKind::Max { 2 } else { 1 };
        expect_arity(self.name(), inputs, arity)?;
        let gy = inputs[0];
        let [h, w] = self.input_hw.clone();
        Ok(TensorType::new(
            gy.dtype,
            vec![gy.shape[0].clone(), gy.shape[1].clone(), h, w],
        ))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let gy = inputs[0];
        let mut gx = RefTensor::zeros(out);
        self.pool
            .for_each_window(out, &gy.shape, |yi, taps, divisor| match self.pool.kind {
                PoolKind::Max => {
                    if let Some(i) = Pool2d::argmax(inputs[1], taps) {
                        gx.data[i] += gy.data[yi];
                    }
                }
                PoolKind::Avg => {
                    for &i in taps {
                        gx.data[i] += gy.data[yi] / T::from_f64(divisor as f64);
                    }
                }
            });
        gx
    }
    fn backward(&self, _: &mut AdCtx, _: NodeId, _: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        Err(no_backward(self.name()))
    }
    fn bind_dims(&self, bindings: &HashMap<String, i64>) -> Self {
        let [h, w] = &self.input_hw;
        Pool2dGrad {
            pool: self.pool.clone(),
            input_hw: [h.bind(bindings), w.bind(bindings)],
        }
    }
}

/// Code generation helpers shared by the forward and gradient kernels.
impl Pool2d {
    /// The pooled value of the window at (oy, ox) of `plane`.
    fn window_value(&self, k: &mut KernelCtx, x: &str, xs: &[usize], plane: &KExpr, oy: &KExpr, ox: &KExpr) -> Value {
        let (h, w) = (xs[2] as i64, xs[3] as i64);
        let start_y = k.constant(
            "y0",
            CTy::I32,
            oy.clone() * self.stride[0] as i64 - self.padding[0] as i64,
        );
        let start_x = k.constant(
            "x0",
            CTy::I32,
            ox.clone() * self.stride[1] as i64 - self.padding[1] as i64,
        );
        let acc = match self.kind {
            PoolKind::Max => k.mutable("best", CTy::F32, f32c(f64::NEG_INFINITY)),
            PoolKind::Avg => k.mutable("sum", CTy::F32, f32c(0.0)),
        };
        let iy = start_y + var("ky") * self.dilation[0] as i64;
        let ix = start_x + var("kx") * self.dilation[1] as i64;
        let v = load(x.to_string(), (plane.clone() * h + iy.clone()) * w + ix.clone());
        let update = match self.kind {
            PoolKind::Max => KStmt::Assign {
                target: acc.clone(),
                op: AssignOp::Set,
                value: call("fmaxf", vec![acc.clone(), v]),
            },
            PoolKind::Avg => KStmt::Assign {
                target: acc.clone(),
                op: AssignOp::Add,
                value: v,
            },
        };
        let inside = iy
            .clone()
            .ge(int(0))
            .and(iy.lt(int(h)))
            .and(ix.clone().ge(int(0)))
            .and(ix.lt(int(w)));
        let guarded = KStmt::If {
            cond: inside,
            then: vec![update],
            otherwise: vec![],
        };
        self.emit_taps(k, vec![guarded]);
        match self.kind {
            PoolKind::Max => Value::f32(acc),
            PoolKind::Avg => {
                let divisor = self.divisor(k, xs, oy, ox);
                Value::f32(acc / divisor)
            }
        }
    }

    /// `for ky { for kx { body } }` over the kernel taps.
    fn emit_taps(&self, k: &mut KernelCtx, body: Vec<KStmt>) {
        let inner = KStmt::For {
            var: "kx".into(),
            start: int(0),
            end: int(self.kernel[1] as i64),
            step: int(1),
            body,
            hint: LoopHint::Compiler,
        };
        k.emit(KStmt::For {
            var: "ky".into(),
            start: int(0),
            end: int(self.kernel[0] as i64),
            step: int(1),
            body: vec![inner],
            hint: LoopHint::Compiler,
        });
    }

    /// Average pooling's divisor for the window at (oy, ox), as PyTorch computes it.
    fn divisor(&self, k: &mut KernelCtx, xs: &[usize], oy: &KExpr, ox: &KExpr) -> KExpr {
        let mut size = Vec::new();
        for (a, o) in [oy, ox].into_iter().enumerate() {
            let n = xs[2 + a] as i64;
            let (kk, s, p) = (self.kernel[a] as i64, self.stride[a] as i64, self.padding[a] as i64);
            let start = o.clone() * s - p;
            let extent = if self.count_include_pad {
                call("min", vec![start.clone() + kk, int(n + p)]) - start
            } else {
                call("min", vec![start.clone() + kk, int(n)]) - call("max", vec![start, int(0)])
            };
            size.push(extent);
        }
        let [hy, hx]: [KExpr; 2] = size.try_into().expect("two axes");
        k.name_value(Value::f32(cast(CTy::F32, hy * hx))).expr
    }

    /// Flat (iy·W + ix) position of the window's first maximum, −1 if empty.
    fn argmax_position(
        &self,
        k: &mut KernelCtx,
        x: &str,
        xs: &[usize],
        plane: &KExpr,
        oy: &KExpr,
        ox: &KExpr,
    ) -> KExpr {
        let (h, w) = (xs[2] as i64, xs[3] as i64);
        let best = k.mutable("best", CTy::F32, f32c(f64::NEG_INFINITY));
        let pos = k.mutable("at", CTy::I32, int(-1));
        let iy = oy.clone() * self.stride[0] as i64 - self.padding[0] as i64 + var("ky") * self.dilation[0] as i64;
        let ix = ox.clone() * self.stride[1] as i64 - self.padding[1] as i64 + var("kx") * self.dilation[1] as i64;
        let v = load(x.to_string(), (plane.clone() * h + iy.clone()) * w + ix.clone());
        let inside = iy
            .clone()
            .ge(int(0))
            .and(iy.clone().lt(int(h)))
            .and(ix.clone().ge(int(0)))
            .and(ix.clone().lt(int(w)));
        let take = vec![
            KStmt::Assign {
                target: best.clone(),
                op: AssignOp::Set,
                value: v.clone(),
            },
            KStmt::Assign {
                target: pos.clone(),
                op: AssignOp::Set,
                value: iy * w + ix,
            },
        ];
        // The first strictly greater value wins, matching the forward pass.
        let body = vec![KStmt::If {
            cond: inside.and(v.gt(best)),
            then: take,
            otherwise: vec![],
        }];
        self.emit_taps(k, body);
        pos
    }

    /// The range [lo, hi) of output positions along axis `a` whose windows
    /// can contain input position `pos`.
    fn windows_covering(&self, k: &mut KernelCtx, a: usize, pos: KExpr, out_size: usize) -> (KExpr, KExpr) {
        let (kk, s, p, d) = (
            self.kernel[a] as i64,
            self.stride[a] as i64,
            self.padding[a] as i64,
            self.dilation[a] as i64,
        );
        // o·s − p ≤ pos ≤ o·s − p + (k−1)·d  ⇔  (pos + p − (k−1)·d)/s ≤ o ≤ (pos + p)/s
        let far = pos.clone() + p - (kk - 1) * d;
        let name = ["lo_y", "lo_x"][a];
        let lo = k.constant(
            name,
            CTy::I32,
            KExpr::Select(
                Box::new(far.clone().le(int(0))),
                Box::new(int(0)),
                Box::new((far + (s - 1)) / s),
            ),
        );
        let hi_name = ["hi_y", "hi_x"][a];
        let hi = k.constant(
            hi_name,
            CTy::I32,
            call("min", vec![(pos + p) / s + 1, int(out_size as i64)]),
        );
        (lo, hi)
    }
}
