//! Arithmetic: binary operators on numbers, sizes and tensors, with their
//! dtype and shape errors, and numbers as scalar constants.

use super::eval::{Build, Checker};
use super::value::Value;
use crate::diag::{Diagnostic, Span};
use crate::ir::expr::{arg, SExpr};
use crate::ir::{Dim, NodeId, Origin};
use crate::ops::{MatMul, Op};
use crate::syntax::ast::BinOp;
use crate::tensor::DType;

impl Checker<'_> {
    pub(super) fn binary(
        &mut self,
        b: &mut Build,
        op: BinOp,
        l: (Value, &Span),
        r: (Value, &Span),
        span: &Span,
        label: &str,
    ) -> Value {
        let label = if label.is_empty() { op_name(op) } else { label };
        match (l.0, r.0) {
            (Value::Error, _) | (_, Value::Error) => Value::Error,
            (Value::Int(x), Value::Int(y)) => self.int_arith(op, &x, &y, span),
            (x @ (Value::Int(_) | Value::Float(_)), y @ (Value::Int(_) | Value::Float(_))) => {
                let (x, y) = (number(&x), number(&y));
                match (x, y, op) {
                    (Some(x), Some(y), _) => Value::Float(match op {
                        BinOp::Add => x + y,
                        BinOp::Sub => x - y,
                        BinOp::Mul => x * y,
                        BinOp::Div => x / y,
                        BinOp::FloorDiv => (x / y).floor(),
                        BinOp::Rem => x.rem_euclid(y),
                        BinOp::MatMul => return self.not_tensors(op, span),
                    }),
                    _ => {
                        self.report(
                            Diagnostic::error("E0200", "symbolic sizes cannot be mixed with decimals")
                                .primary(span.clone(), "here"),
                        );
                        Value::Error
                    }
                }
            }
            (Value::Tensor(x), Value::Tensor(y)) if op == BinOp::MatMul => {
                if !self.both_float(b, (x, l.1), (y, r.1), op, span) {
                    return Value::Error;
                }
                match b.graph.add(
                    Op::MatMul(MatMul::default()),
                    &[x, y],
                    Origin::new(label, Some(span.clone())),
                ) {
                    Ok(id) => Value::Tensor(id),
                    Err(e) => {
                        self.shape_error(b, e.message, e.hint, (x, l.1), (y, r.1), span);
                        Value::Error
                    }
                }
            }
            (Value::Tensor(x), Value::Tensor(y)) => {
                if !self.both_float(b, (x, l.1), (y, r.1), op, span) {
                    return Value::Error;
                }
                let Some(body) = elementwise(op, arg(0), arg(1)) else {
                    return self.not_tensors(op, span);
                };
                self.map(b, body, &[(x, l.1), (y, r.1)], span, label)
            }
            (Value::Tensor(x), s) if scalar(&s).is_some() => self.tensor_scalar(b, op, (x, l.1), &s, true, span, label),
            (s, Value::Tensor(x)) if scalar(&s).is_some() => {
                self.tensor_scalar(b, op, (x, r.1), &s, false, span, label)
            }
            (x, y) => {
                self.report(
                    Diagnostic::error(
                        "E0200",
                        format!("cannot apply `{}` to {} and {}", op.symbol(), x.kind(), y.kind()),
                    )
                    .primary(span.clone(), "unsupported operands"),
                );
                Value::Error
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tensor_scalar(
        &mut self,
        b: &mut Build,
        op: BinOp,
        x: (NodeId, &Span),
        s: &Value,
        tensor_left: bool,
        span: &Span,
        label: &str,
    ) -> Value {
        let c = scalar(s).expect("caller checked");
        let body = if tensor_left {
            elementwise(op, arg(0), c)
        } else {
            elementwise(op, c, arg(0))
        };
        let Some(body) = body else {
            return self.not_tensors(op, span);
        };
        if !b.graph.ty(x.0).dtype.is_float() {
            self.dtype_error(b, x, op, span);
            return Value::Error;
        }
        self.map(b, body, &[x], span, label)
    }

    fn int_arith(&mut self, op: BinOp, x: &Dim, y: &Dim, span: &Span) -> Value {
        let result = match op {
            BinOp::Add => Some(Value::Int(x.add(y))),
            BinOp::Sub => Some(Value::Int(x.sub(y))),
            BinOp::Mul => Some(Value::Int(x.mul(y))),
            BinOp::Div => match (x.as_const(), y.as_const()) {
                (Some(a), Some(b)) if b != 0 => Some(Value::Float(a as f64 / b as f64)),
                _ => x.div_exact(y).map(Value::Int),
            },
            BinOp::FloorDiv => y
                .as_const()
                .filter(|&k| k > 0)
                .and_then(|k| x.floor_div(k))
                .map(Value::Int),
            BinOp::Rem => match (x.as_const(), y.as_const()) {
                (Some(a), Some(b)) if b != 0 => Some(Value::Int(Dim::lit(a.rem_euclid(b)))),
                _ => None,
            },
            BinOp::MatMul => return self.not_tensors(op, span),
        };
        result.unwrap_or_else(|| {
            let d = Diagnostic::error(
                "E0200",
                format!("cannot compute `{x} {} {y}` as a whole size", op.symbol()),
            )
            .primary(span.clone(), "not a whole number for every value of the symbols")
            .help("sizes divide only by numbers that divide them exactly; use `//` for floor division by a number");
            self.report(d);
            Value::Error
        })
    }

    fn not_tensors(&mut self, op: BinOp, span: &Span) -> Value {
        self.report(
            Diagnostic::error("E0200", format!("`{}` needs two tensors", op.symbol()))
                .primary(span.clone(), "not a matrix product of tensors")
                .help("`a @ b` multiplies matrices; use `*` to scale"),
        );
        Value::Error
    }

    fn both_float(&mut self, b: &Build, x: (NodeId, &Span), y: (NodeId, &Span), op: BinOp, span: &Span) -> bool {
        let (tx, ty) = (b.graph.ty(x.0), b.graph.ty(y.0));
        if tx.dtype.is_float() && ty.dtype.is_float() {
            return true;
        }
        let d = Diagnostic::error(
            "E0301",
            format!("dtype mismatch: cannot apply `{}` to {tx} and {ty}", op.symbol()),
        )
        .primary(span.clone(), "arithmetic needs floating-point tensors")
        .secondary(x.1.clone(), format!("this is {tx}"))
        .secondary(y.1.clone(), format!("this is {ty}"))
        .help("integer tensors (token ids, labels) can only be compared or used as indices");
        self.report(d);
        false
    }

    fn dtype_error(&mut self, b: &Build, x: (NodeId, &Span), op: BinOp, span: &Span) {
        let tx = b.graph.ty(x.0);
        let d = Diagnostic::error(
            "E0301",
            format!("dtype mismatch: cannot apply `{}` to {tx}", op.symbol()),
        )
        .primary(span.clone(), "arithmetic needs floating-point tensors")
        .secondary(x.1.clone(), format!("this is {tx}"))
        .help("integer tensors (token ids, labels) can only be compared or used as indices");
        self.report(d);
    }

    fn shape_error(
        &mut self,
        b: &Build,
        message: String,
        hint: Option<String>,
        x: (NodeId, &Span),
        y: (NodeId, &Span),
        span: &Span,
    ) {
        let (tx, ty) = (b.graph.ty(x.0), b.graph.ty(y.0));
        let mut d = Diagnostic::error("E0300", format!("shape mismatch: {message}"))
            .primary(span.clone(), "shapes do not fit")
            .secondary(x.1.clone(), format!("this is {tx}"))
            .secondary(y.1.clone(), format!("this is {ty}"));
        if let Some(h) = hint {
            d = d.help(h);
        }
        self.report(d);
    }

    /// An elementwise node; shape errors name both operands' types.
    pub(super) fn map(
        &mut self,
        b: &mut Build,
        body: SExpr,
        operands: &[(NodeId, &Span)],
        span: &Span,
        label: &str,
    ) -> Value {
        let ids: Vec<NodeId> = operands.iter().map(|(id, _)| *id).collect();
        let op = crate::ops::Map::new(body, DType::F32);
        match b.graph.add(op.into(), &ids, Origin::new(label, Some(span.clone()))) {
            Ok(id) => Value::Tensor(id),
            Err(e) => {
                match operands {
                    [x, y] => self.shape_error(b, e.message, e.hint, *x, *y, span),
                    _ => self.report(Diagnostic::error("E0300", e.message).primary(span.clone(), "here")),
                }
                Value::Error
            }
        }
    }
}

fn op_name(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "add",
        BinOp::Sub => "sub",
        BinOp::Mul => "mul",
        BinOp::Div => "div",
        BinOp::FloorDiv => "floor_div",
        BinOp::Rem => "rem",
        BinOp::MatMul => "matmul",
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(d) => d.as_const().map(|c| c as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// A number (or symbolic size) as a scalar expression.
fn scalar(v: &Value) -> Option<SExpr> {
    match v {
        Value::Int(d) => Some(match d.as_const() {
            Some(c) => SExpr::Const(c as f64),
            None => SExpr::Size(d.clone()),
        }),
        Value::Float(f) => Some(SExpr::Const(*f)),
        _ => None,
    }
}

fn elementwise(op: BinOp, a: SExpr, b: SExpr) -> Option<SExpr> {
    match op {
        BinOp::Add => Some(a + b),
        BinOp::Sub => Some(a - b),
        BinOp::Mul => Some(a * b),
        BinOp::Div => Some(a / b),
        BinOp::FloorDiv | BinOp::Rem | BinOp::MatMul => None,
    }
}
