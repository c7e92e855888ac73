//! Scalar expressions: the body of an elementwise `map` node.
//!
//! Every elementwise op (add, relu, gelu, the batch-norm affine, optimizer
//! updates, loss terms) is one `SExpr` over the node's operands. Because the
//! body is data, one mechanism covers them all: the reference evaluator
//! interprets it, autodiff differentiates it symbolically, fusion substitutes
//! one body into another, and codegen prints it as C.

use super::dim::Dim;
use std::collections::HashMap;
use std::fmt;
use std::ops;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Sigmoid,
    Erf,
    Abs,
    Recip,
    Log1p,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum SExpr {
    /// The node's operand `k`, broadcast to the output shape.
    Arg(usize),
    Const(f64),
    /// A size, possibly symbolic until the graph is specialised.
    Size(Dim),
    /// The output coordinate along an axis (for one-hot and masks).
    Coord(usize),
    /// A uniform number in [0, 1) from a counter-based hash of
    /// (seed operand, salt, flat output index): the same on every device and
    /// recomputable in the backward pass, so dropout masks are never stored.
    Uniform {
        seed: usize,
        salt: u32,
    },
    Unary(UnOp, Box<SExpr>),
    Binary(BinOp, Box<SExpr>, Box<SExpr>),
    /// `cond != 0 ? a : b`
    Select(Box<SExpr>, Box<SExpr>, Box<SExpr>),
}

pub fn arg(k: usize) -> SExpr {
    SExpr::Arg(k)
}

pub fn lit(v: f64) -> SExpr {
    SExpr::Const(v)
}

impl SExpr {
    pub fn unary(op: UnOp, a: SExpr) -> SExpr {
        match (op, &a) {
            (UnOp::Neg, SExpr::Const(v)) => SExpr::Const(-v),
            (UnOp::Neg, SExpr::Unary(UnOp::Neg, inner)) => (**inner).clone(),
            (_, SExpr::Const(v)) if op != UnOp::Neg => SExpr::Const(apply_unary(op, *v)),
            _ => SExpr::Unary(op, Box::new(a)),
        }
    }

    pub fn binary(op: BinOp, a: SExpr, b: SExpr) -> SExpr {
        use SExpr::Const;
        match (op, &a, &b) {
            (_, Const(x), Const(y)) => Const(apply_binary(op, *x, *y)),
            (BinOp::Add, Const(z), _) if *z == 0.0 => b,
            (BinOp::Add | BinOp::Sub, _, Const(z)) if *z == 0.0 => a,
            (BinOp::Sub, Const(z), _) if *z == 0.0 => SExpr::unary(UnOp::Neg, b),
            (BinOp::Mul, Const(z), _) | (BinOp::Mul, _, Const(z)) if *z == 0.0 => Const(0.0),
            (BinOp::Mul, Const(one), _) if *one == 1.0 => b,
            (BinOp::Mul | BinOp::Div, _, Const(one)) if *one == 1.0 => a,
            (BinOp::Mul, Const(m), _) if *m == -1.0 => SExpr::unary(UnOp::Neg, b),
            (BinOp::Mul, _, Const(m)) if *m == -1.0 => SExpr::unary(UnOp::Neg, a),
            (BinOp::Div, Const(z), _) if *z == 0.0 => Const(0.0),
            _ => SExpr::Binary(op, Box::new(a), Box::new(b)),
        }
    }

    pub fn select(cond: SExpr, a: SExpr, b: SExpr) -> SExpr {
        match &cond {
            SExpr::Const(c) => {
                if *c != 0.0 {
                    a
                } else {
                    b
                }
            }
            _ if a == b => a,
            _ => SExpr::Select(Box::new(cond), Box::new(a), Box::new(b)),
        }
    }

    pub fn exp(self) -> SExpr {
        SExpr::unary(UnOp::Exp, self)
    }
    pub fn log(self) -> SExpr {
        SExpr::unary(UnOp::Log, self)
    }
    pub fn sqrt(self) -> SExpr {
        SExpr::unary(UnOp::Sqrt, self)
    }
    pub fn rsqrt(self) -> SExpr {
        SExpr::unary(UnOp::Rsqrt, self)
    }
    pub fn tanh(self) -> SExpr {
        SExpr::unary(UnOp::Tanh, self)
    }
    pub fn sigmoid(self) -> SExpr {
        SExpr::unary(UnOp::Sigmoid, self)
    }
    pub fn erf(self) -> SExpr {
        SExpr::unary(UnOp::Erf, self)
    }
    pub fn abs(self) -> SExpr {
        SExpr::unary(UnOp::Abs, self)
    }
    pub fn log1p(self) -> SExpr {
        SExpr::unary(UnOp::Log1p, self)
    }
    pub fn max(self, other: SExpr) -> SExpr {
        SExpr::binary(BinOp::Max, self, other)
    }
    pub fn min(self, other: SExpr) -> SExpr {
        SExpr::binary(BinOp::Min, self, other)
    }
    pub fn pow(self, other: SExpr) -> SExpr {
        SExpr::binary(BinOp::Pow, self, other)
    }
    pub fn gt(self, other: SExpr) -> SExpr {
        SExpr::binary(BinOp::Gt, self, other)
    }
    pub fn lt(self, other: SExpr) -> SExpr {
        SExpr::binary(BinOp::Lt, self, other)
    }
    pub fn ge(self, other: SExpr) -> SExpr {
        SExpr::binary(BinOp::Ge, self, other)
    }
    pub fn eq_(self, other: SExpr) -> SExpr {
        SExpr::binary(BinOp::Eq, self, other)
    }

    /// Largest operand index used, plus one.
    pub fn arity(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |e| match e {
            SExpr::Arg(k) | SExpr::Uniform { seed: k, .. } => n = n.max(k + 1),
            _ => {}
        });
        n
    }

    pub fn visit(&self, f: &mut impl FnMut(&SExpr)) {
        f(self);
        match self {
            SExpr::Unary(_, a) => a.visit(f),
            SExpr::Binary(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            SExpr::Select(c, a, b) => {
                c.visit(f);
                a.visit(f);
                b.visit(f);
            }
            _ => {}
        }
    }

    /// Rebuilds the expression bottom-up, letting `f` replace any leaf.
    pub fn map_leaves(&self, f: &mut impl FnMut(&SExpr) -> Option<SExpr>) -> SExpr {
        match self {
            SExpr::Unary(op, a) => SExpr::unary(*op, a.map_leaves(f)),
            SExpr::Binary(op, a, b) => SExpr::binary(*op, a.map_leaves(f), b.map_leaves(f)),
            SExpr::Select(c, a, b) => SExpr::select(c.map_leaves(f), a.map_leaves(f), b.map_leaves(f)),
            leaf => f(leaf).unwrap_or_else(|| leaf.clone()),
        }
    }

    /// Renumbers operands: `Arg(k)` becomes `Arg(map[k])`.
    pub fn remap_args(&self, map: &[usize]) -> SExpr {
        self.map_leaves(&mut |e| match e {
            SExpr::Arg(k) => Some(SExpr::Arg(map[*k])),
            SExpr::Uniform { seed, salt } => Some(SExpr::Uniform {
                seed: map[*seed],
                salt: *salt,
            }),
            _ => None,
        })
    }

    /// Replaces every `Arg(k)` with `subst[k]`.
    pub fn substitute(&self, subst: &[SExpr]) -> SExpr {
        self.map_leaves(&mut |e| match e {
            SExpr::Arg(k) => Some(subst[*k].clone()),
            _ => None,
        })
    }

    /// Replaces symbolic sizes with their values (as constants, so that
    /// arithmetic on them folds).
    pub fn bind_dims(&self, bindings: &HashMap<String, i64>) -> SExpr {
        self.map_leaves(&mut |e| match e {
            SExpr::Size(d) => {
                let bound = d.bind(bindings);
                Some(bound.as_const().map_or(SExpr::Size(bound), |v| SExpr::Const(v as f64)))
            }
            _ => None,
        })
    }

    /// Symbolic partial derivative with respect to operand `k`.
    pub fn derivative(&self, k: usize) -> SExpr {
        use SExpr::*;
        match self {
            Arg(j) => lit(if *j == k { 1.0 } else { 0.0 }),
            Const(_) | Size(_) | Coord(_) | Uniform { .. } => lit(0.0),
            Unary(op, a) => {
                let da = a.derivative(k);
                if da == lit(0.0) {
                    return da;
                }
                let a = (**a).clone();
                let local = match op {
                    UnOp::Neg => lit(-1.0),
                    UnOp::Exp => a.exp(),
                    UnOp::Log => SExpr::unary(UnOp::Recip, a),
                    UnOp::Sqrt => lit(0.5) / a.sqrt(),
                    UnOp::Rsqrt => lit(-0.5) * a.clone().rsqrt() / a,
                    UnOp::Tanh => lit(1.0) - a.clone().tanh() * a.tanh(),
                    UnOp::Sigmoid => a.clone().sigmoid() * (lit(1.0) - a.sigmoid()),
                    UnOp::Erf => lit(std::f64::consts::FRAC_2_SQRT_PI) * (-(a.clone() * a)).exp(),
                    UnOp::Abs => SExpr::select(
                        a.clone().gt(lit(0.0)),
                        lit(1.0),
                        SExpr::select(a.lt(lit(0.0)), lit(-1.0), lit(0.0)),
                    ),
                    UnOp::Recip => -(lit(1.0) / (a.clone() * a)),
                    UnOp::Log1p => SExpr::unary(UnOp::Recip, lit(1.0) + a),
                };
                local * da
            }
            Binary(op, a, b) => {
                let (da, db) = (a.derivative(k), b.derivative(k));
                let (a, b) = ((**a).clone(), (**b).clone());
                match op {
                    BinOp::Add => da + db,
                    BinOp::Sub => da - db,
                    BinOp::Mul => da * b + a * db,
                    BinOp::Div => da / b.clone() - a * db / (b.clone() * b),
                    // Ties send the gradient to the second operand, so relu =
                    // max(x, 0) has derivative 0 at 0, as in PyTorch.
                    BinOp::Max => SExpr::select(a.gt(b), da, db),
                    BinOp::Min => SExpr::select(a.lt(b), da, db),
                    BinOp::Pow => {
                        let power_rule = b.clone() * a.clone().pow(b.clone() - lit(1.0)) * da;
                        if db == lit(0.0) {
                            power_rule
                        } else {
                            power_rule + a.clone().log() * a.pow(b) * db
                        }
                    }
                    _ => lit(0.0),
                }
            }
            Select(c, a, b) => SExpr::select((**c).clone(), a.derivative(k), b.derivative(k)),
        }
    }

    /// Evaluates at one output element: `args` are the operand values there,
    /// `coords` the output coordinates and `flat` their row-major index.
    pub fn eval(&self, env: &EvalEnv) -> f64 {
        match self {
            SExpr::Arg(k) => env.args[*k],
            SExpr::Const(v) => *v,
            SExpr::Size(d) => d.as_const().unwrap_or_else(|| panic!("unbound size {d} at evaluation")) as f64,
            SExpr::Coord(axis) => env.coords[*axis] as f64,
            SExpr::Uniform { seed, salt } => uniform(env.args[*seed] as i64 as u64, *salt, env.flat as u32),
            SExpr::Unary(op, a) => apply_unary(*op, a.eval(env)),
            SExpr::Binary(op, a, b) => apply_binary(*op, a.eval(env), b.eval(env)),
            SExpr::Select(c, a, b) => {
                if c.eval(env) != 0.0 {
                    a.eval(env)
                } else {
                    b.eval(env)
                }
            }
        }
    }
}

/// Where an expression is evaluated (see [`SExpr::eval`]).
pub struct EvalEnv<'a> {
    pub args: &'a [f64],
    pub coords: &'a [usize],
    pub flat: usize,
}

pub fn apply_unary(op: UnOp, x: f64) -> f64 {
    match op {
        UnOp::Neg => -x,
        UnOp::Exp => x.exp(),
        UnOp::Log => x.ln(),
        UnOp::Sqrt => x.sqrt(),
        UnOp::Rsqrt => 1.0 / x.sqrt(),
        UnOp::Tanh => x.tanh(),
        UnOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnOp::Erf => erf(x),
        UnOp::Abs => x.abs(),
        UnOp::Recip => 1.0 / x,
        UnOp::Log1p => x.ln_1p(),
    }
}

pub fn apply_binary(op: BinOp, x: f64, y: f64) -> f64 {
    let truth = |b: bool| if b { 1.0 } else { 0.0 };
    match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::Max => x.max(y),
        BinOp::Min => x.min(y),
        BinOp::Pow => x.powf(y),
        BinOp::Lt => truth(x < y),
        BinOp::Le => truth(x <= y),
        BinOp::Gt => truth(x > y),
        BinOp::Ge => truth(x >= y),
        BinOp::Eq => truth(x == y),
        BinOp::Ne => truth(x != y),
    }
}

/// The error function; Rust's standard library has none.
pub fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// murmur3's 32-bit finaliser: every input bit affects every output bit.
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The counter-based uniform generator; `runtime/netc.cuh` has the same
/// function (`netc_uniform`) bit for bit.
pub fn uniform(seed: u64, salt: u32, index: u32) -> f64 {
    let key = fmix32((seed as u32) ^ fmix32(((seed >> 32) as u32).wrapping_add(salt.wrapping_mul(0x9e37_79b9))));
    let h = fmix32(fmix32(index ^ key).wrapping_add(key));
    f64::from(h >> 8) * (1.0 / 16_777_216.0)
}

macro_rules! sexpr_binop {
    ($trait:ident, $method:ident, $op:expr) => {
        impl ops::$trait for SExpr {
            type Output = SExpr;
            fn $method(self, rhs: SExpr) -> SExpr {
                SExpr::binary($op, self, rhs)
            }
        }
    };
}
sexpr_binop!(Add, add, BinOp::Add);
sexpr_binop!(Sub, sub, BinOp::Sub);
sexpr_binop!(Mul, mul, BinOp::Mul);
sexpr_binop!(Div, div, BinOp::Div);

impl ops::Neg for SExpr {
    type Output = SExpr;
    fn neg(self) -> SExpr {
        SExpr::unary(UnOp::Neg, self)
    }
}

impl fmt::Display for SExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SExpr::Arg(k) => write!(f, "x{k}"),
            SExpr::Const(v) => write!(f, "{v}"),
            SExpr::Size(d) => write!(f, "{d}"),
            SExpr::Coord(a) => write!(f, "i{a}"),
            SExpr::Uniform { seed, salt } => write!(f, "uniform(x{seed}, {salt})"),
            SExpr::Unary(UnOp::Neg, a) => write!(f, "-({a})"),
            SExpr::Unary(op, a) => write!(f, "{}({a})", format!("{op:?}").to_lowercase()),
            SExpr::Binary(op, a, b) => {
                let sym = match op {
                    BinOp::Add => "+",
                    BinOp::Sub => "-",
                    BinOp::Mul => "*",
                    BinOp::Div => "/",
                    BinOp::Lt => "<",
                    BinOp::Le => "<=",
                    BinOp::Gt => ">",
                    BinOp::Ge => ">=",
                    BinOp::Eq => "==",
                    BinOp::Ne => "!=",
                    BinOp::Max | BinOp::Min | BinOp::Pow => {
                        return write!(f, "{}({a}, {b})", format!("{op:?}").to_lowercase());
                    }
                };
                write!(f, "({a} {sym} {b})")
            }
            SExpr::Select(c, a, b) => write!(f, "({c} ? {a} : {b})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(e: &SExpr, args: &[f64]) -> f64 {
        e.eval(&EvalEnv {
            args,
            coords: &[],
            flat: 0,
        })
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let x = || arg(0);
        let y = || arg(1);
        let gelu = lit(0.5) * x() * (lit(1.0) + (x() * lit(std::f64::consts::FRAC_1_SQRT_2)).erf());
        let cases = vec![
            x().sigmoid() * y(),
            x().tanh() / (y() + lit(3.0)),
            gelu,
            x().max(lit(0.0)),
            (x() * y()).exp().log1p(),
            x().pow(lit(3.0)) - y().rsqrt(),
            x().abs().sqrt(),
        ];
        for e in cases {
            for k in 0..2 {
                let p = [0.7, 1.3];
                let h = 1e-6;
                let mut hi = p;
                let mut lo = p;
                hi[k] += h;
                lo[k] -= h;
                let numeric = (at(&e, &hi) - at(&e, &lo)) / (2.0 * h);
                let symbolic = at(&e.derivative(k), &p);
                assert!(
                    (numeric - symbolic).abs() < 1e-6,
                    "{e} d/dx{k}: {numeric} vs {symbolic}"
                );
            }
        }
    }

    #[test]
    fn relu_has_zero_gradient_at_zero() {
        let relu = arg(0).max(lit(0.0));
        assert_eq!(at(&relu.derivative(0), &[0.0]), 0.0);
        assert_eq!(at(&relu.derivative(0), &[2.0]), 1.0);
    }

    #[test]
    fn erf_is_accurate() {
        for (x, want) in [
            (0.1, 0.112_462_916_018_284_9),
            (1.0, 0.842_700_792_949_714_9),
            (2.5, 0.999_593_047_982_555),
            (-0.6, -0.603_856_090_847_925_9),
        ] {
            assert!((erf(x) - want).abs() < 1e-14, "erf({x})");
        }
    }

    #[test]
    fn uniform_is_spread_and_deterministic() {
        let n = 100_000;
        let mean: f64 = (0..n).map(|i| uniform(42, 7, i)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01);
        assert_eq!(uniform(1, 2, 3), uniform(1, 2, 3));
        assert_ne!(uniform(1, 2, 3), uniform(1, 3, 3));
    }

    #[test]
    fn simplification_folds_constants_and_identities() {
        assert_eq!(arg(0) * lit(1.0) + lit(0.0), arg(0));
        assert_eq!(lit(2.0) * lit(3.0), lit(6.0));
        assert_eq!(arg(0) * lit(0.0), lit(0.0));
    }
}
