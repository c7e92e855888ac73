//! 2-D convolution (NCHW input, OIHW weight, PyTorch semantics: stride,
//! zero padding, dilation, groups) and its two gradients.

use super::{expect_arity, expect_float, no_backward, OpError, OpResult, Primitive};
use crate::autodiff::AdCtx;
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
        let pair = |v: [usize; 2]| if v[0] == v[1] { v[0].to_string() } else { format!("({}, {})", v[0], v[1]) };
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
            OpError::new(format!("the output size ({span}) / {} + 1 is not a whole number for every {n}", self.stride[a]))
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
                            let Some(iy) = geo.source(0, oy, ky, h) else { continue };
                            for ox in 0..wo {
                                let Some(ix) = geo.source(1, ox, kx, wd) else { continue };
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
        return Err(OpError::new(format!("conv2d expects an OIHW weight of rank 4, got {w}")));
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
        return Err(OpError::new(format!("{} output channels do not split into {} groups", w.shape[0], geo.groups)));
    }
    Ok(())
}

fn kernel_size(w: &TensorType) -> OpResult<[usize; 2]> {
    let k = |d: &Dim| d.as_const().filter(|&v| v > 0).map(|v| v as usize);
    match (k(&w.shape[2]), k(&w.shape[3])) {
        (Some(kh), Some(kw)) => Ok([kh, kw]),
        _ => Err(OpError::new(format!("conv2d kernel sizes must be positive constants, got {w}"))),
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
        Ok(TensorType::new(x.dtype, vec![x.shape[0].clone(), w.shape[0].clone(), ho, wo]))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let (x, w) = (inputs[0], inputs[1]);
        let mut y = RefTensor::zeros(out);
        for_each_tap(&x.shape, &w.shape, out, &self.geometry, |xi, wi, yi| y.data[yi] += x.data[xi] * w.data[wi]);
        y
    }
    fn backward(&self, ad: &mut AdCtx, node: NodeId, grad: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        let ops = ad.g.operands(node);
        let (x, w) = (ops[0], ops[1]);
        let x_shape = ad.ty(x).shape.clone();
        let kernel = kernel_size(ad.ty(w))?;
        let gx = ad.add(
            Conv2dGradInput { geometry: self.geometry, input_hw: [x_shape[2].clone(), x_shape[3].clone()] },
            &[grad, w],
        )?;
        let gw = ad.add(Conv2dGradWeight { geometry: self.geometry, kernel }, &[grad, x])?;
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
        for_each_tap(out, &w.shape, &gy.shape, &self.geometry, |xi, wi, yi| gx.data[xi] += gy.data[yi] * w.data[wi]);
        gx
    }
    fn backward(&self, _: &mut AdCtx, _: NodeId, _: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        Err(no_backward(self.name()))
    }
    fn bind_dims(&self, bindings: &HashMap<String, i64>) -> Self {
        let [h, w] = &self.input_hw;
        Conv2dGradInput { geometry: self.geometry, input_hw: [h.bind(bindings), w.bind(bindings)] }
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
        Ok(TensorType::new(gy.dtype, vec![gy.shape[1].clone(), cg, Dim::from(kh), Dim::from(kw)]))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let (gy, x) = (inputs[0], inputs[1]);
        let mut gw = RefTensor::zeros(out);
        for_each_tap(&x.shape, out, &gy.shape, &self.geometry, |xi, wi, yi| gw.data[wi] += gy.data[yi] * x.data[xi]);
        gw
    }
    fn backward(&self, _: &mut AdCtx, _: NodeId, _: NodeId) -> OpResult<Vec<Option<NodeId>>> {
        Err(no_backward(self.name()))
    }
}
