//! Layer types: declared once with their sizes (creating parameters named
//! as in PyTorch's `state_dict`), applied to tensors any number of times.

use super::functions::{dropout, pool_from_args};
use super::{Ctx, Layer, LayerType, LibError, LibResult};
use crate::check::value::{opt, req, ArgError, Args, Default as D, Kind};
use crate::diag::{Diagnostic, Span};
use crate::ir::expr::{arg, lit, SExpr};
use crate::ir::{fmt_shape, Dim, NodeId, TensorType};
use crate::ops::*;
use crate::tensor::DType;

pub static ALL: &[LayerType] = &[
    LayerType {
        name: "Conv2d",
        shapes: "[N, C_in, H, W] → [N, C_out, H_out, W_out]",
        params: &[
            req("in_channels", Kind::Int),
            req("out_channels", Kind::Int),
            req("kernel", Kind::Pair),
            opt("stride", Kind::Pair, D::Int(1)),
            opt("padding", Kind::Pair, D::Int(0)),
            opt("dilation", Kind::Pair, D::Int(1)),
            opt("groups", Kind::Int, D::Int(1)),
            opt("bias", Kind::Bool, D::Bool(true)),
        ],
        declare: Conv2dLayer::declare,
        summary: "2-D convolution over NCHW; weight [out, in/groups, kh, kw]",
        torch: "nn.Conv2d",
    },
    LayerType {
        name: "Linear",
        shapes: "[…, in] → […, out]",
        params: &[
            req("in_features", Kind::Int),
            req("out_features", Kind::Int),
            opt("bias", Kind::Bool, D::Bool(true)),
        ],
        declare: LinearLayer::declare,
        summary: "x @ weightᵀ + bias on the last axis of any rank; weight [out, in]",
        torch: "nn.Linear",
    },
    LayerType {
        name: "BatchNorm2d",
        shapes: "[N, C, H, W] → same",
        params: &[
            req("num_features", Kind::Int),
            opt("eps", Kind::Float, D::Float(1e-5)),
            opt("momentum", Kind::Float, D::Float(0.1)),
            opt("affine", Kind::Bool, D::Bool(true)),
            opt("track_running_stats", Kind::Bool, D::Bool(true)),
        ],
        declare: BatchNormLayer::declare,
        summary: "normalises each channel by batch statistics (training) or running statistics (evaluation)",
        torch: "nn.BatchNorm2d",
    },
    LayerType {
        name: "Dropout",
        shapes: "any → same",
        params: &[opt("p", Kind::Float, D::Float(0.5))],
        declare: |_, a, _, _| Ok(Box::new(DropoutLayer { p: a.float("p")? })),
        summary: "zeroes elements with probability p while training",
        torch: "nn.Dropout",
    },
    LayerType {
        name: "MaxPool2d",
        shapes: "[N, C, H, W] → [N, C, H_out, W_out]",
        params: &[
            req("kernel", Kind::Pair),
            opt("stride", Kind::Pair, D::SameAs("kernel")),
            opt("padding", Kind::Pair, D::Int(0)),
            opt("dilation", Kind::Pair, D::Int(1)),
            opt("ceil_mode", Kind::Bool, D::Bool(false)),
        ],
        declare: |_, a, _, _| Ok(Box::new(PoolLayer(pool_from_args(PoolKind::Max, a)?))),
        summary: "2-D max pooling",
        torch: "nn.MaxPool2d",
    },
    LayerType {
        name: "AvgPool2d",
        shapes: "[N, C, H, W] → [N, C, H_out, W_out]",
        params: &[
            req("kernel", Kind::Pair),
            opt("stride", Kind::Pair, D::SameAs("kernel")),
            opt("padding", Kind::Pair, D::Int(0)),
            opt("ceil_mode", Kind::Bool, D::Bool(false)),
            opt("count_include_pad", Kind::Bool, D::Bool(true)),
        ],
        declare: |_, a, _, _| Ok(Box::new(PoolLayer(pool_from_args(PoolKind::Avg, a)?))),
        summary: "2-D average pooling",
        torch: "nn.AvgPool2d",
    },
];

/// U(−1/√fan_in, 1/√fan_in): what PyTorch's kaiming_uniform_(a=√5) gives
/// weights and what its bias initialisation gives biases.
fn fan_in_init(fan_in: usize) -> Init {
    Init::Uniform(1.0 / (fan_in as f64).sqrt())
}

/// `[C]` reshaped to `[C, 1, 1]` so it broadcasts over NCHW's channel axis.
fn per_channel(c: &mut Ctx, v: NodeId) -> LibResult<NodeId> {
    let n = c.ty(v).shape[0].clone();
    c.add(
        Reshape {
            shape: vec![n, Dim::lit(1), Dim::lit(1)],
        },
        &[v],
    )
}

/// A size error at a layer's use that also points at its declaration.
fn size_mismatch(layer: &str, use_span: &Span, decl_span: &Span, message: String, decl_label: String) -> LibError {
    LibError::Diag(Box::new(
        Diagnostic::error("E0308", message)
            .primary(use_span.clone(), format!("`{layer}` is applied here"))
            .secondary(decl_span.clone(), decl_label),
    ))
}

fn expect_rank(c: &Ctx, x: NodeId, rank: usize, layer: &str, layout: &str) -> LibResult<()> {
    let ty = c.ty(x);
    if ty.rank() == rank {
        Ok(())
    } else {
        Err(
            OpError::new(format!("`{layer}` expects a rank-{rank} {layout} input, found {ty}"))
                .with_hint(if rank == 4 {
                    "image batches are [N, C, H, W]; use `reshape` or `unsqueeze` to add axes"
                } else {
                    ""
                })
                .into(),
        )
    }
}

#[derive(Debug)]
struct Conv2dLayer {
    name: String,
    weight: NodeId,
    bias: Option<NodeId>,
    geometry: ConvGeometry,
    in_channels: usize,
    in_span: Span,
}

impl Conv2dLayer {
    fn declare(c: &mut Ctx, a: &Args, prefix: &str, _: &Span) -> LibResult<Box<dyn Layer>> {
        let (cin, cout, groups) = (
            a.positive("in_channels")?,
            a.positive("out_channels")?,
            a.positive("groups")?,
        );
        for (what, v) in [("in_channels", cin), ("out_channels", cout)] {
            if v % groups != 0 {
                return Err(ArgError::at(
                    if what == "in_channels" {
                        "in_channels"
                    } else {
                        "out_channels"
                    },
                    format!("{what} = {v} is not divisible by groups = {groups}"),
                )
                .into());
            }
        }
        let [kh, kw] = a.pair("kernel", 1)?;
        let geometry = ConvGeometry {
            stride: a.pair("stride", 1)?,
            padding: a.pair("padding", 0)?,
            dilation: a.pair("dilation", 1)?,
            groups,
        };
        let init = fan_in_init(cin / groups * kh * kw);
        let weight = c.param(&format!("{prefix}.weight"), &[cout, cin / groups, kh, kw], init, true);
        let bias = a
            .bool("bias")?
            .then(|| c.param(&format!("{prefix}.bias"), &[cout], init, true));
        Ok(Box::new(Conv2dLayer {
            name: prefix.to_string(),
            weight,
            bias,
            geometry,
            in_channels: cin,
            in_span: a.span("in_channels"),
        }))
    }
}

impl Layer for Conv2dLayer {
    fn apply(&self, c: &mut Ctx, x: NodeId, use_span: &Span) -> LibResult<NodeId> {
        expect_rank(c, x, 4, &self.name, "NCHW")?;
        let channels = c.ty(x).shape[1].clone();
        if !channels.is_const(self.in_channels as i64) {
            return Err(size_mismatch(
                &self.name,
                use_span,
                &self.in_span,
                format!(
                    "`{}` expects {} input channels but receives {channels}",
                    self.name, self.in_channels
                ),
                format!("declared with {} input channels here", self.in_channels),
            ));
        }
        let y = c.add(
            Conv2d {
                geometry: self.geometry,
            },
            &[x, self.weight],
        )?;
        match self.bias {
            Some(b) => {
                let b = per_channel(c, b)?;
                c.map(arg(0) + arg(1), &[y, b])
            }
            None => Ok(y),
        }
    }
}

#[derive(Debug)]
struct LinearLayer {
    name: String,
    weight: NodeId,
    bias: Option<NodeId>,
    in_features: usize,
    in_span: Span,
}

impl LinearLayer {
    fn declare(c: &mut Ctx, a: &Args, prefix: &str, _: &Span) -> LibResult<Box<dyn Layer>> {
        let (fin, fout) = (a.positive("in_features")?, a.positive("out_features")?);
        let init = fan_in_init(fin);
        let weight = c.param(&format!("{prefix}.weight"), &[fout, fin], init, true);
        let bias = a
            .bool("bias")?
            .then(|| c.param(&format!("{prefix}.bias"), &[fout], init, true));
        Ok(Box::new(LinearLayer {
            name: prefix.to_string(),
            weight,
            bias,
            in_features: fin,
            in_span: a.span("in_features"),
        }))
    }

    /// The size error, suggesting the declaration that would fit (as the
    /// product that `flatten` made, when it made it).
    fn mismatch(&self, c: &Ctx, x: NodeId, use_span: &Span) -> LibError {
        let ty = c.ty(x);
        let got = ty.shape.last().cloned().unwrap_or_else(|| Dim::lit(1));
        let suggestion = match c.state.flattened.get(&x) {
            Some(factors) if factors.len() > 1 => factors.iter().map(Dim::to_string).collect::<Vec<_>>().join(" * "),
            _ => got.to_string(),
        };
        let mut d = Diagnostic::error(
            "E0308",
            format!(
                "`{}` expects {} input features but receives {got}",
                self.name, self.in_features
            ),
        )
        .primary(
            use_span.clone(),
            format!("this input has shape {}", fmt_shape(&ty.shape)),
        )
        .secondary(
            self.in_span.clone(),
            format!(
                "`{}` is declared with {} input features here",
                self.name, self.in_features
            ),
        );
        if let Some(factors) = c.state.flattened.get(&x) {
            d = d.note(format!("the last axis was flattened from {}", fmt_shape(factors)));
        }
        if got.as_const().is_some() {
            d = d.help(format!("declare the layer with `{suggestion}` input features"));
        }
        LibError::Diag(Box::new(d))
    }
}

impl Layer for LinearLayer {
    fn apply(&self, c: &mut Ctx, x: NodeId, use_span: &Span) -> LibResult<NodeId> {
        let x = c.float_tensor("x", x)?;
        let shape = c.ty(x).shape.clone();
        if shape.last().is_none_or(|d| !d.is_const(self.in_features as i64)) {
            return Err(self.mismatch(c, x, use_span));
        }
        // Any rank: fold the leading axes into one matrix dimension.
        let rows = shape[..shape.len() - 1].to_vec();
        let flat = if shape.len() == 2 {
            x
        } else {
            let n = crate::ir::numel(&rows);
            c.add(
                Reshape {
                    shape: vec![n, Dim::from(self.in_features)],
                },
                &[x],
            )?
        };
        let y = c.add(MatMul::new(false, true), &[flat, self.weight])?;
        let y = match self.bias {
            Some(b) => c.map(arg(0) + arg(1), &[y, b])?,
            None => y,
        };
        if shape.len() == 2 {
            return Ok(y);
        }
        let mut out = rows;
        out.push(c.ty(y).shape[1].clone());
        c.add(Reshape { shape: out }, &[y])
    }
}

#[derive(Debug)]
struct BatchNormLayer {
    name: String,
    weight: Option<NodeId>,
    bias: Option<NodeId>,
    running: Option<(NodeId, NodeId, NodeId)>,
    features: usize,
    eps: f64,
    momentum: f64,
    in_span: Span,
}

impl BatchNormLayer {
    fn declare(c: &mut Ctx, a: &Args, prefix: &str, _: &Span) -> LibResult<Box<dyn Layer>> {
        let n = a.positive("num_features")?;
        let momentum = a.float("momentum")?;
        if !(0.0..=1.0).contains(&momentum) {
            return Err(ArgError::at("momentum", format!("momentum must be in [0, 1], got {momentum}")).into());
        }
        let affine = a.bool("affine")?;
        let weight = affine.then(|| c.param(&format!("{prefix}.weight"), &[n], Init::Const(1.0), true));
        let bias = affine.then(|| c.param(&format!("{prefix}.bias"), &[n], Init::Const(0.0), true));
        let running = a.bool("track_running_stats")?.then(|| {
            let mean = c.param(&format!("{prefix}.running_mean"), &[n], Init::Const(0.0), false);
            let var = c.param(&format!("{prefix}.running_var"), &[n], Init::Const(1.0), false);
            let count = c.param_typed(
                &format!("{prefix}.num_batches_tracked"),
                TensorType::scalar(DType::I64),
                Init::Const(0.0),
                false,
            );
            (mean, var, count)
        });
        Ok(Box::new(BatchNormLayer {
            name: prefix.to_string(),
            weight,
            bias,
            running,
            features: n,
            eps: a.float("eps")?,
            momentum,
            in_span: a.span("num_features"),
        }))
    }
}

impl Layer for BatchNormLayer {
    fn apply(&self, c: &mut Ctx, x: NodeId, use_span: &Span) -> LibResult<NodeId> {
        let x = c.float_tensor("x", x)?;
        expect_rank(c, x, 4, &self.name, "NCHW")?;
        let channels = c.ty(x).shape[1].clone();
        if !channels.is_const(self.features as i64) {
            return Err(size_mismatch(
                &self.name,
                use_span,
                &self.in_span,
                format!(
                    "`{}` normalises {} channels but receives {channels}",
                    self.name, self.features
                ),
                format!("declared with {} features here", self.features),
            ));
        }
        let batch_stats = c.mode == crate::check::Mode::Train || self.running.is_none();
        let (mean, var) = if batch_stats {
            let mean = c.add(Reduce::new(ReduceKind::Mean, vec![0, 2, 3], true), &[x])?;
            let centered_sq = c.map((arg(0) - arg(1)) * (arg(0) - arg(1)), &[x, mean])?;
            let var = c.add(Reduce::new(ReduceKind::Mean, vec![0, 2, 3], true), &[centered_sq])?;
            if let (Some((rm, rv, count)), crate::check::Mode::Train) = (self.running, c.mode) {
                self.update_running(c, x, mean, var, (rm, rv, count))?;
            }
            (mean, var)
        } else {
            let (rm, rv, _) = self.running.expect("running statistics exist in evaluation");
            (per_channel(c, rm)?, per_channel(c, rv)?)
        };
        let mut operands = vec![x, mean, var];
        let mut body = (arg(0) - arg(1)) * (arg(2) + lit(self.eps)).rsqrt();
        if let (Some(w), Some(b)) = (self.weight, self.bias) {
            operands.push(per_channel(c, w)?);
            operands.push(per_channel(c, b)?);
            body = body * arg(3) + arg(4);
        }
        c.map(body, &operands)
    }
}

impl BatchNormLayer {
    /// PyTorch's update: running = (1 − m)·running + m·batch, with the
    /// unbiased (n / (n − 1)) variance, and the batch counter incremented.
    fn update_running(
        &self,
        c: &mut Ctx,
        x: NodeId,
        mean: NodeId,
        var: NodeId,
        (rm, rv, count): (NodeId, NodeId, NodeId),
    ) -> LibResult<()> {
        let shape = c.ty(x).shape.clone();
        let n = shape[0].mul(&shape[2]).mul(&shape[3]);
        let m = self.momentum;
        let flat = |c: &mut Ctx, v: NodeId| {
            c.add(
                Reshape {
                    shape: vec![Dim::from(self.features)],
                },
                &[v],
            )
        };
        let (mean, var) = (flat(c, mean)?, flat(c, var)?);
        let new_mean = c.map(lit(1.0 - m) * arg(0) + lit(m) * arg(1), &[rm, mean])?;
        let unbiased = arg(1) * SExpr::Size(n.clone()) / SExpr::Size(n.sub(&Dim::lit(1)));
        let new_var = c.map(lit(1.0 - m) * arg(0) + lit(m) * unbiased, &[rv, var])?;
        let new_count = c.add(Map::new(arg(0) + lit(1.0), DType::I64), &[count])?;
        c.state
            .state_updates
            .extend([(rm, new_mean), (rv, new_var), (count, new_count)]);
        Ok(())
    }
}

#[derive(Debug)]
struct DropoutLayer {
    p: f64,
}

impl Layer for DropoutLayer {
    fn apply(&self, c: &mut Ctx, x: NodeId, _: &Span) -> LibResult<NodeId> {
        let x = c.float_tensor("x", x)?;
        dropout(c, x, self.p)
    }
}

#[derive(Debug)]
struct PoolLayer(Pool2d);

impl Layer for PoolLayer {
    fn apply(&self, c: &mut Ctx, x: NodeId, _: &Span) -> LibResult<NodeId> {
        c.add(self.0.clone(), &[x])
    }
}
