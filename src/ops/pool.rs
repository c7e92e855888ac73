//! 2-D max and average pooling (PyTorch semantics: padding, dilation for max,
//! ceil_mode, count_include_pad for average) and their gradient.

use super::{expect_arity, expect_float, no_backward, OpError, OpResult, Primitive};
use crate::autodiff::AdCtx;
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
            return Err(OpError::new(format!("pooling padding {p} must be at most half the kernel size {k}")));
        }
        let reach = (d * (k - 1) + 1) as i64;
        let Some(len) = n.as_const() else {
            if self.ceil_mode {
                return Err(OpError::new(format!("ceil_mode pooling needs a concrete size, got {n}")));
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
        let mut out = if self.ceil_mode { (span + s - 1) / s + 1 } else { span / s + 1 };
        // A window must start inside the input or its left padding.
        if self.ceil_mode && (out - 1) * s >= len + p as i64 {
            out -= 1;
        }
        Ok(Dim::lit(out))
    }

    pub fn window(&self, a: usize, o: usize, n: usize) -> Window {
        let (k, s, p, d) = (self.kernel[a], self.stride[a], self.padding[a] as isize, self.dilation[a]);
        let start = (o * s) as isize - p;
        let end_padded = (start + k as isize).min(n as isize + p);
        let divisor = if self.count_include_pad {
            (end_padded - start) as usize
        } else {
            (start.max(0)..(start + k as isize).min(n as isize)).count()
        };
        Window { start, step: d, taps: k, divisor }
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
        taps.iter().copied().reduce(|best, i| if x.data[i] > x.data[best] { i } else { best })
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
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        expect_arity(self.name(), inputs, 1)?;
        let x = inputs[0];
        expect_float(self.name(), "input", x)?;
        if x.rank() != 4 {
            return Err(OpError::new(format!("{} expects an NCHW input of rank 4, got {x}", self.name())));
        }
        let ho = self.out_size(0, &x.shape[2])?;
        let wo = self.out_size(1, &x.shape[3])?;
        Ok(TensorType::new(x.dtype, vec![x.shape[0].clone(), x.shape[1].clone(), ho, wo]))
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
        let op = Pool2dGrad { pool: self.clone(), input_hw: [shape[2].clone(), shape[3].clone()] };
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
    fn infer(&self, inputs: &[&TensorType]) -> OpResult<TensorType> {
        let arity = if self.pool.kind == PoolKind::Max { 2 } else { 1 };
        expect_arity(self.name(), inputs, arity)?;
        let gy = inputs[0];
        let [h, w] = self.input_hw.clone();
        Ok(TensorType::new(gy.dtype, vec![gy.shape[0].clone(), gy.shape[1].clone(), h, w]))
    }
    fn eval<T: Real>(&self, inputs: &[&RefTensor<T>], out: &[usize]) -> RefTensor<T> {
        let gy = inputs[0];
        let mut gx = RefTensor::zeros(out);
        self.pool.for_each_window(out, &gy.shape, |yi, taps, divisor| match self.pool.kind {
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
        Pool2dGrad { pool: self.pool.clone(), input_hw: [h.bind(bindings), w.bind(bindings)] }
    }
}
