//! 2-D convolution (NCHW input, OIHW weight, PyTorch semantics: stride,
//! zero padding, dilation, groups) and its two gradients.

use super::{expect_arity, expect_float, no_backward, FusionRole, OpError, OpResult, Primitive};
use crate::autodiff::AdCtx;
use crate::codegen::ctx::{CodegenError, Coords, KernelCtx};
use crate::codegen::gemm::{self, axis, CpuOrder, GemmOperands, GemmShape};
use crate::codegen::kir::{f32c, int, load, select, KExpr};
use crate::ir::{Dim, NodeId, TensorType};
use crate::reference::{Real, RefTensor};
use std::collections::HashMap;

/// Stride, padding, dilation and groups of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvGeometry {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let pair = |v: [usize; 2]| {
            if v[0] == v[1] {
                v[0].to_string()
            } else {
                format!("({}, {})", v[0], v[1])
            }
        };
        if self.stride != [1, 1] {
            parts.push(format!("stride={}", pair(self.stride)));
        }
        if self.padding != [0, 0] {
            parts.push(format!("padding={}", pair(self.padding)));
        }
        if self.dilation != [1, 1] {
            parts.push(format!("dilation={}", pair(self.dilation)));
        }
        if self.groups != 1 {
            parts.push(format!("groups={}", self.groups));
        }
        parts.join(", ")
    }

    /// Output size along axis `a` (0 = height) for input size `n` and kernel `k`.
    pub fn out_size(&self, a: usize, n: &Dim, k: usize) -> OpResult<Dim> {
        let reach = (self.dilation[a] * (k - 1) + 1) as i64;
        let span = n.add(&Dim::lit(2 * self.padding[a] as i64 - reach));
        if span.as_const().is_some_and(|v| v < 0) {
            return Err(OpError::new(format!(
                "the {} input size {n} (padded by {}) is smaller than the kernel's reach {reach}",
                ["height", "width"][a],
                self.padding[a]
            ))
            .with_hint("use a smaller kernel or more padding, or pool less before this layer"));
        }
        let q = span.floor_div(self.stride[a] as i64).ok_or_else(|| {
            OpError::new(format!(
                "the output size ({span}) / {} + 1 is not a whole number for every {n}",
                self.stride[a]
            ))
        })?;
        Ok(q.add(&Dim::lit(1)))
    }

    /// Input coordinate read by output coordinate `o` at kernel tap `k`, if inside.
    fn source(&self, a: usize, o: usize, k: usize, n: usize) -> Option<usize> {
        let pos = (o * self.stride[a] + k * self.dilation[a]) as isize - self.padding[a] as isize;
        (pos >= 0 && (pos as usize) < n).then_some(pos as usize)
    }
}

/// Visits every (input, weight, output) index triple of a convolution: the
/// one loop nest the forward pass and both gradients are defined by.
fn for_each_tap(x: &[usize], w: &[usize], y: &[usize], geo: &ConvGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let (n, c, h, wd) = (x[0], x[1], x[2], x[3]);
    let (o, cg, kh, kw) = (w[0], w[1], w[2], w[3]);
    let (ho, wo) = (y[2], y[3]);
    let og = o / geo.groups;
    for b in 0..n {
        for oc in 0..o {
            let g = oc / og;
            for ci in 0..cg {
                let ic = g * cg + ci;
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wi = ((oc * cg + ci) * kh + ky) * kw + kx;
                        for oy in 0..ho {
                            let Some(iy) = geo.source(0, oy, ky, h) else {
                                continue;
                            };
                            for ox in 0..wo {
                                let Some(ix) = geo.source(1, ox, kx, wd) else {
                                    continue;
                                };
                                let xi = ((b * c + ic) * h + iy) * wd + ix;
                                let yi = ((b * o + oc) * ho + oy) * wo + ox;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check_weight(geo: &ConvGeometry, x: &TensorType, w: &TensorType) -> OpResult<()> {
    if x.rank() != 4 {
        return Err(OpError::new(format!("conv2d expects an NCHW input of rank 4, got {x}"))
            .with_hint("add a batch axis, or `reshape` the input to [N, C, H, W]"));
    }
    if w.rank() != 4 {
        return Err(OpError::new(format!(
            "conv2d expects an OIHW weight of rank 4, got {w}"
        )));
    }
    let g = geo.groups as i64;
    let c_per_group = x.shape[1].div_exact(&Dim::lit(g));
    if c_per_group.as_ref() != Some(&w.shape[1]) {
        return Err(OpError::new(format!(
            "conv2d input has {} channels but the weight {w} expects {} × {} groups",
            x.shape[1], w.shape[1], geo.groups
        )));
    }
    if w.shape[0].as_const().is_some_and(|o| o % g != 0) {
        return Err(OpError::new(format!(
            "{} output channels do not split into {} groups",
            w.shape[0], geo.groups
        )));
    }
    Ok(())
}

fn kernel_size(w: &TensorType) -> OpResult<[usize; 2]> {
    let k = |d: &Dim| d.as_const().filter(|&v| v > 0).map(|v| v as usize);
    match (k(&w.shape[2]), k(&w.shape[3])) {
        (Some(kh), Some(kw)) => Ok([kh, kw]),
        _ => Err(OpError::new(format!(
            "conv2d kernel sizes must be positive constants, got {w}"
        ))),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub geometry: ConvGeometry,
}

impl Primitive for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Anchor
    }
    fn lower(&self, k: &mut KernelCtx, node: NodeId) -> Result<(), CodegenError> {
        let ops = k.graph.operands(node);
        let d = ConvDims::new(&k.dims(ops[0]), &k.dims(ops[1]), &k.dims(node), self.geometry);
        let plan = ConvGemm {
            d,
            geo: self.geometry,
            x: k.buffer(ops[0]),
            w: k.buffer(ops[1]),
            dy: String::new(),
        };
        let shape = GemmShape {
            batch: d.n * d.g,
            m: vec![axis("o", d.og)],
            n: vec![axis("oy", d.ho), axis("ox", d.wo)],
            k: vec![axis("ci", d.cg), axis("ky", d.kh), axis("kx", d.kw)],
        };
        gemm::emit(k, node, shape, &Forward(&plan));
        Ok(())
    }
    fn attrs(&self) -> String {
        self.geometry.describe()
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity("conv2d", inputs, 2)?;
        let (x, w) = (inputs[0], inputs[1]);
        expect_float("conv2d", "input", x)?;
        check_weight(&self.geometry, x, w)?;
        let [kh, kw] = kernel_size(w)?;
        let ho = self.geometry.out_size(0, &x.shape[2], kh)?;
        let wo = self.geometry.out_size(1, &x.shape[3], kw)?;
        Ok(TensorType::new(
            x.dtype,
            vec![x.shape[0].clone(), w.shape[0].clone(), ho, wo],
        ))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let (x, w) = (inputs[0], inputs[1]);
        let mut y = RefTensor::zeros(out);
        for_each_tap(&x.shape, &w.shape, out, &self.geometry, |xi, wi, yi| {
            y.data[yi] += x.data[xi] * w.data[wi]
        });
        y
    }
    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let ops = ad.g.operands(node);
        let (x, w) = (ops[0], ops[1]);
        let x_shape = ad.ty(x).shape.clone();
        let kernel = kernel_size(ad.ty(w))?;
        let gx = ad.add(
            Conv2dGradInput {
                geometry: self.geometry,
                input_hw: [x_shape[2].clone(), x_shape[3].clone()],
            },
            &[grad, w],
        )?;
        let gw = ad.add(
            Conv2dGradWeight {
                geometry: self.geometry,
                kernel,
            },
            &[grad, x],
        )?;
        Ok(vec![Some(gx), Some(gw)])
    }
}

/// d loss / d input of a convolution, from (grad of output, weight).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dGradInput {
    pub geometry: ConvGeometry,
    pub input_hw: [Dim; 2],
}

impl Primitive for Conv2dGradInput {
    fn name(&self) -> &'static str {
        "conv2d_grad_input"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Anchor
    }
    fn lower(&self, k: &mut KernelCtx, node: NodeId) -> Result<(), CodegenError> {
        let ops = k.graph.operands(node);
        let d = ConvDims::new(&k.dims(node), &k.dims(ops[1]), &k.dims(ops[0]), self.geometry);
        let plan = ConvGemm {
            d,
            geo: self.geometry,
            x: String::new(),
            w: k.buffer(ops[1]),
            dy: k.buffer(ops[0]),
        };
        let shape = GemmShape {
            batch: d.n * d.g,
            m: vec![axis("ci", d.cg)],
            n: vec![axis("iy", d.h), axis("ix", d.w)],
            k: vec![axis("o", d.og), axis("ky", d.kh), axis("kx", d.kw)],
        };
        gemm::emit(k, node, shape, &GradInput(&plan));
        Ok(())
    }
    fn attrs(&self) -> String {
        self.geometry.describe()
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity(self.name(), inputs, 2)?;
        let (gy, w) = (inputs[0], inputs[1]);
        let channels = w.shape[1].mul(&Dim::lit(self.geometry.groups as i64));
        let [h, wd] = self.input_hw.clone();
        Ok(TensorType::new(gy.dtype, vec![gy.shape[0].clone(), channels, h, wd]))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let (gy, w) = (inputs[0], inputs[1]);
        let mut gx = RefTensor::zeros(out);
        for_each_tap(out, &w.shape, &gy.shape, &self.geometry, |xi, wi, yi| {
            gx.data[xi] += gy.data[yi] * w.data[wi]
        });
        gx
    }
    fn backward(&self, _: &mut AdCtx, _: NodeId, _: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        Err(no_backward(self.name()))
    }
    fn bind_dims(&self, bindings: &HashMap<String, i64>) -> Self {
        let [h, w] = &self.input_hw;
        Conv2dGradInput {
            geometry: self.geometry,
            input_hw: [h.bind(bindings), w.bind(bindings)],
        }
    }
}

/// d loss / d weight of a convolution, from (grad of output, input).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dGradWeight {
    pub geometry: ConvGeometry,
    pub kernel: [usize; 2],
}

impl Primitive for Conv2dGradWeight {
    fn name(&self) -> &'static str {
        "conv2d_grad_weight"
    }
    fn fusion_role(&self) -> FusionRole {
        FusionRole::Anchor
    }
    fn lower(&self, k: &mut KernelCtx, node: NodeId) -> Result<(), CodegenError> {
        let ops = k.graph.operands(node);
        let d = ConvDims::new(&k.dims(ops[1]), &k.dims(node), &k.dims(ops[0]), self.geometry);
        let plan = ConvGemm {
            d,
            geo: self.geometry,
            x: k.buffer(ops[1]),
            w: String::new(),
            dy: k.buffer(ops[0]),
        };
        let shape = GemmShape {
            batch: d.g,
            m: vec![axis("o", d.og)],
            n: vec![axis("ci", d.cg), axis("ky", d.kh), axis("kx", d.kw)],
            k: vec![axis("n", d.n), axis("oy", d.ho), axis("ox", d.wo)],
        };
        gemm::emit(k, node, shape, &GradWeight(&plan));
        Ok(())
    }
    fn attrs(&self) -> String {
        self.geometry.describe()
    }
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity(self.name(), inputs, 2)?;
        let (gy, x) = (inputs[0], inputs[1]);
        let cg = x.shape[1]
            .div_exact(&Dim::lit(self.geometry.groups as i64))
            .ok_or_else(|| OpError::new("input channels do not split into groups"))?;
        let [kh, kw] = self.kernel;
        Ok(TensorType::new(
            gy.dtype,
            vec![gy.shape[1].clone(), cg, Dim::from(kh), Dim::from(kw)],
        ))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let (gy, x) = (inputs[0], inputs[1]);
        let mut gw = RefTensor::zeros(out);
        for_each_tap(&x.shape, out, &gy.shape, &self.geometry, |xi, wi, yi| {
            gw.data[wi] += gy.data[yi] * x.data[xi]
        });
        gw
    }
    fn backward(&self, _: &mut AdCtx, _: NodeId, _: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        Err(no_backward(self.name()))
    }
}

/// Every size of a convolution, from its input, weight and output shapes.
#[derive(Clone, Copy, Debug)]
struct ConvDims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    g: usize,
    cg: usize,
    og: usize,
}

impl ConvDims {
    fn new(x: &[usize], w: &[usize], y: &[usize], geo: ConvGeometry) -> ConvDims {
        ConvDims {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            o: w[0],
            ho: y[2],
            wo: y[3],
            kh: w[2],
            kw: w[3],
            g: geo.groups,
            cg: w[1],
            og: w[0] / geo.groups,
        }
    }
}

/// The convolution as implicit GEMMs. All three share the im2col indexing:
/// input pixel (iy, ix) = (oy·s − p + ky·d, ox·s − p + kx·d).
struct ConvGemm {
    d: ConvDims,
    geo: ConvGeometry,
    x: String,
    w: String,
    dy: String,
}

fn i(v: usize) -> KExpr {
    int(v as i64)
}

impl ConvGemm {
    /// (sample, group) of a batch index that runs over samples × groups.
    fn sample_group(&self, k: &mut KernelCtx, b: &KExpr) -> (KExpr, KExpr) {
        if self.d.g == 1 {
            (b.clone(), int(0))
        } else {
            (
                k.index("n", b.clone() / self.d.g as i64),
                k.index("g", b.clone().modulo(i(self.d.g))),
            )
        }
    }

    /// x[n, g·Cg + c, oy·s − p + ky·d, ...], zero in the padding.
    fn im2col(
        &self,
        k: &mut KernelCtx,
        (n, g, c): (&KExpr, &KExpr, &KExpr),
        (oy, ox): (&KExpr, &KExpr),
        (ky, kx): (&KExpr, &KExpr),
    ) -> KExpr {
        let geo = &self.geo;
        let d = &self.d;
        let iy = k.index(
            "iy",
            oy.clone() * geo.stride[0] as i64 - geo.padding[0] as i64 + ky.clone() * geo.dilation[0] as i64,
        );
        let ix = k.index(
            "ix",
            ox.clone() * geo.stride[1] as i64 - geo.padding[1] as i64 + kx.clone() * geo.dilation[1] as i64,
        );
        let channel = g.clone() * d.cg as i64 + c.clone();
        let index = ((n.clone() * d.c as i64 + channel) * d.h as i64 + iy.clone()) * d.w as i64 + ix.clone();
        let mut inside = Vec::new();
        if geo.padding[0] > 0 {
            inside.push(iy.clone().ge(int(0)).and(iy.lt(i(d.h))));
        }
        if geo.padding[1] > 0 {
            inside.push(ix.clone().ge(int(0)).and(ix.lt(i(d.w))));
        }
        guard(inside, load(self.x.clone(), index))
    }

    /// Weight tap (c, ky, kx) of output channel `o` in the OIHW weight.
    fn weight(&self, o: KExpr, c: &KExpr, ky: &KExpr, kx: &KExpr) -> KExpr {
        let d = &self.d;
        load(
            self.w.clone(),
            ((o * d.cg as i64 + c.clone()) * d.kh as i64 + ky.clone()) * d.kw as i64 + kx.clone(),
        )
    }
}

/// `cond ? value : 0`, or the bare value when nothing can fall outside.
fn guard(conds: Vec<KExpr>, value: KExpr) -> KExpr {
    match conds.into_iter().reduce(KExpr::and) {
        Some(c) => select(c, value, f32c(0.0)),
        None => value,
    }
}

/// y[n, g·Og + o, oy, ox] = Σ_(c,ky,kx) w[g·Og + o, c, ky, kx] · x[n, g·Cg + c, iy, ix]
struct Forward<'a>(&'a ConvGemm);

impl GemmOperands for Forward<'_> {
    fn a(&self, k: &mut KernelCtx, b: &KExpr, m: &[KExpr], q: &[KExpr]) -> KExpr {
        let c = &self.0;
        let (_, g) = c.sample_group(k, b);
        c.weight(g * c.d.og as i64 + m[0].clone(), &q[0], &q[1], &q[2])
    }
    fn b(&self, k: &mut KernelCtx, b: &KExpr, q: &[KExpr], p: &[KExpr]) -> KExpr {
        let c = &self.0;
        let (n, g) = c.sample_group(k, b);
        c.im2col(k, (&n, &g, &q[0]), (&p[0], &p[1]), (&q[1], &q[2]))
    }
    fn out(&self, k: &mut KernelCtx, b: &KExpr, m: &[KExpr], p: &[KExpr]) -> Coords {
        let c = &self.0;
        let (n, g) = c.sample_group(k, b);
        Coords::from_axes(vec![n, g * c.d.og as i64 + m[0].clone(), p[0].clone(), p[1].clone()])
    }
    fn cpu_order(&self) -> CpuOrder {
        CpuOrder::RowUpdate
    }
}

/// dx[n, g·Cg + c, iy, ix] = Σ_(o,ky,kx) w[g·Og + o, c, ky, kx] · dy[n, g·Og + o, oy, ox]
/// over the taps where iy = oy·s − p + ky·d has a whole oy inside the output.
struct GradInput<'a>(&'a ConvGemm);

impl GemmOperands for GradInput<'_> {
    fn a(&self, k: &mut KernelCtx, b: &KExpr, m: &[KExpr], q: &[KExpr]) -> KExpr {
        let c = &self.0;
        let (_, g) = c.sample_group(k, b);
        c.weight(g * c.d.og as i64 + q[0].clone(), &m[0], &q[1], &q[2])
    }
    fn b(&self, k: &mut KernelCtx, b: &KExpr, q: &[KExpr], p: &[KExpr]) -> KExpr {
        let c = &self.0;
        let (geo, d) = (c.geo, c.d);
        let (n, g) = c.sample_group(k, b);
        let (o_local, ky, kx) = (&q[0], &q[1], &q[2]);
        // The output pixel whose window puts tap (ky, kx) on (iy, ix).
        let sy = k.index(
            "sy",
            p[0].clone() + geo.padding[0] as i64 - ky.clone() * geo.dilation[0] as i64,
        );
        let sx = k.index(
            "sx",
            p[1].clone() + geo.padding[1] as i64 - kx.clone() * geo.dilation[1] as i64,
        );
        let mut conds = Vec::new();
        let mut source = |k: &mut KernelCtx, t: KExpr, stride: usize, size: usize, name: &str| {
            conds.push(t.clone().ge(int(0)));
            let o = if stride == 1 {
                t
            } else {
                conds.push(t.clone().modulo(i(stride)).eq(int(0)));
                k.index(name, t / stride as i64)
            };
            conds.push(o.clone().lt(i(size)));
            o
        };
        let oy = source(k, sy, geo.stride[0], d.ho, "oy");
        let ox = source(k, sx, geo.stride[1], d.wo, "ox");
        let channel = g * d.og as i64 + o_local.clone();
        let index = ((n * d.o as i64 + channel) * d.ho as i64 + oy) * d.wo as i64 + ox;
        guard(conds, load(c.dy.clone(), index))
    }
    fn out(&self, k: &mut KernelCtx, b: &KExpr, m: &[KExpr], p: &[KExpr]) -> Coords {
        let c = &self.0;
        let (n, g) = c.sample_group(k, b);
        Coords::from_axes(vec![n, g * c.d.cg as i64 + m[0].clone(), p[0].clone(), p[1].clone()])
    }
    fn cpu_order(&self) -> CpuOrder {
        CpuOrder::RowUpdate
    }
}

/// dw[g·Og + o, c, ky, kx] = Σ_(n,oy,ox) dy[n, g·Og + o, oy, ox] · x[n, g·Cg + c, iy, ix]
struct GradWeight<'a>(&'a ConvGemm);

impl GemmOperands for GradWeight<'_> {
    fn a(&self, _: &mut KernelCtx, g: &KExpr, m: &[KExpr], r: &[KExpr]) -> KExpr {
        let c = &self.0;
        let d = &c.d;
        let channel = g.clone() * d.og as i64 + m[0].clone();
        load(
            c.dy.clone(),
            ((r[0].clone() * d.o as i64 + channel) * d.ho as i64 + r[1].clone()) * d.wo as i64 + r[2].clone(),
        )
    }
    fn b(&self, k: &mut KernelCtx, g: &KExpr, r: &[KExpr], q: &[KExpr]) -> KExpr {
        self.0.im2col(k, (&r[0], g, &q[0]), (&r[1], &r[2]), (&q[1], &q[2]))
    }
    fn out(&self, _: &mut KernelCtx, g: &KExpr, m: &[KExpr], q: &[KExpr]) -> Coords {
        let c = &self.0;
        Coords::from_axes(vec![
            g.clone() * c.d.og as i64 + m[0].clone(),
            q[0].clone(),
            q[1].clone(),
            q[2].clone(),
        ])
    }
    fn cpu_order(&self) -> CpuOrder {
        CpuOrder::DotProduct
    }
}
