//! Optimizers as generated kernels: each update rule is a `map` node per
//! parameter, with PyTorch's exact arithmetic. Hyperparameters that change
//! from step to step (learning rate, bias corrections) are scalar inputs of
//! the step graph, so a schedule never recompiles anything.

use crate::ir::expr::{arg, lit, SExpr};
use crate::ir::{Graph, NodeId, Origin, TensorType};
use crate::ops::{compact_operands, Init, Input, Map, Op, OpError, Param};
use crate::tensor::DType;

#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer {
    Sgd {
        lr: f64,
        momentum: f64,
        dampening: f64,
        nesterov: bool,
        weight_decay: f64,
    },
    Adam {
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
    },
}

impl Optimizer {
    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => *lr,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd { .. } => "SGD",
            Optimizer::Adam { decoupled: false, .. } => "Adam",
            Optimizer::Adam { decoupled: true, .. } => "AdamW",
        }
    }

    /// Names of the per-parameter state tensors, as saved in checkpoints
    /// (`optimizer.<param>.<state>`), following PyTorch's state keys.
    pub fn state_names(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd { momentum, .. } if *momentum == 0.0 => &[],
            Optimizer::Sgd { .. } => &["momentum_buffer"],
            Optimizer::Adam { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }

    /// Values of the per-step scalar inputs (in `SCALARS` order) at 1-based `step`.
    pub fn scalars(&self, step: u64, lr: f64) -> [f64; 3] {
        match self {
            Optimizer::Sgd { .. } => [lr, if step == 1 { 1.0 } else { 0.0 }, 0.0],
            Optimizer::Adam { betas: (b1, b2), .. } => {
                let bc1 = 1.0 - b1.powf(step as f64);
                let bc2 = 1.0 - b2.powf(step as f64);
                [lr, lr / bc1, bc2.sqrt()]
            }
        }
    }
}

/// The step graph's scalar inputs: learning rate, and (SGD) whether this is
/// the first step, or (Adam) lr / (1 − β₁ᵗ) and √(1 − β₂ᵗ).
pub const SCALARS: [&str; 3] = ["optim.lr", "optim.s1", "optim.s2"];

/// One parameter's update: the new value and new state, each with the node
/// it replaces after the step.
pub struct Update {
    pub replaces: Vec<(NodeId, NodeId)>,
}

/// The scalar inputs, created once per step graph.
pub fn scalar_inputs(g: &mut Graph) -> [NodeId; 3] {
    SCALARS.map(|name| {
        let ty = TensorType::scalar(DType::F32);
        let id = g.add_typed(
            Op::Input(Input {
                name: name.into(),
                ty: ty.clone(),
            }),
            &[],
            ty,
            Origin::named(name),
        );
        g.inputs.push(id);
        id
    })
}

/// Adds the update of parameter `p` (named `name`) with gradient `grad`.
pub fn update(
    opt: &Optimizer,
    g: &mut Graph,
    name: &str,
    p: NodeId,
    grad: NodeId,
    scalars: [NodeId; 3],
) -> Result<Update, OpError> {
    let ty = g.ty(p).clone();
    let origin = Origin::named(format!("{} update of {name}", opt.name()));
    let state = |g: &mut Graph, key: &str| {
        let state_name = format!("optimizer.{name}.{key}");
        let op = Param {
            name: state_name.clone(),
            ty: ty.clone(),
            init: Init::Const(0.0),
            trainable: false,
        };
        g.add_typed(Op::Param(op), &[], ty.clone(), Origin::named(state_name))
    };
    let map = |g: &mut Graph, body: SExpr, operands: &[NodeId]| {
        let (body, operands) = compact_operands(&body, operands);
        g.add(Map::new(body, DType::F32).into(), &operands, origin.clone())
    };
    let [lr, s1, s2] = scalars;
    match *opt {
        Optimizer::Sgd {
            momentum,
            dampening,
            nesterov,
            weight_decay,
            ..
        } => {
            // d = g + wd·p
            let d = || arg(0) + lit(weight_decay) * arg(1);
            if momentum == 0.0 {
                let new_p = map(g, arg(1) - arg(2) * d(), &[grad, p, lr])?;
                return Ok(Update {
                    replaces: vec![(p, new_p)],
                });
            }
            let buf = state(g, "momentum_buffer");
            // PyTorch starts the buffer at d itself, then buf = μ·buf + (1 − τ)·d.
            let new_buf = map(
                g,
                SExpr::select(arg(3), d(), lit(momentum) * arg(2) + lit(1.0 - dampening) * d()),
                &[grad, p, buf, s1],
            )?;
            let step_dir = if nesterov { d() + lit(momentum) * arg(2) } else { arg(2) };
            let new_p = map(g, arg(1) - arg(3) * step_dir, &[grad, p, new_buf, lr])?;
            Ok(Update {
                replaces: vec![(p, new_p), (buf, new_buf)],
            })
        }
        Optimizer::Adam {
            betas: (b1, b2),
            eps,
            weight_decay,
            decoupled,
            ..
        } => {
            let (m, v) = (state(g, "exp_avg"), state(g, "exp_avg_sq"));
            let d = if decoupled {
                arg(0)
            } else {
                arg(0) + lit(weight_decay) * arg(1)
            };
            let new_m = map(g, lit(b1) * arg(2) + lit(1.0 - b1) * d.clone(), &[grad, p, m])?;
            let new_v = map(g, lit(b2) * arg(2) + lit(1.0 - b2) * d.clone() * d, &[grad, p, v])?;
            // AdamW shrinks the parameter by lr·wd before the Adam step.
            let base = if decoupled && weight_decay != 0.0 {
                arg(0) * (lit(1.0) - arg(4) * lit(weight_decay))
            } else {
                arg(0)
            };
            // p − (lr / bc1) · m / (√v / √bc2 + eps), as torch.optim.Adam computes it.
            let body = base - arg(3) * arg(1) / (arg(2).sqrt() / arg(5) + lit(eps));
            let new_p = map(g, body, &[p, new_m, new_v, s1, lr, s2])?;
            Ok(Update {
                replaces: vec![(p, new_p), (m, new_m), (v, new_v)],
            })
        }
    }
}
