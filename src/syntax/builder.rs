//! What the grammar's actions call to build the tree: expression nodes with
//! their depth, so that no expression grows deeper than [`MAX_DEPTH`], and
//! the checks that the grammar leaves to actions.

use super::ast::{Arg, BinOp, Expr, ExprKind, Ident, Setting, TargetDecl, TrainSection};
use super::lexer::Token;
use crate::diag::{Diagnostic, Span};
use lalrpop_util::ErrorRecovery;
use std::convert::Infallible;

/// How deep an expression tree may grow. Every later stage walks expressions
/// recursively (and so do the derived `Drop`, `Clone` and `Debug`), so the
/// depth has to be bounded where the tree is built. It is well above what a
/// person writes: a pipeline of n stages is n deep.
pub const MAX_DEPTH: u32 = 1000;

/// Marks a subtree that already exceeded [`MAX_DEPTH`] and was reported.
const TOO_DEEP: u32 = u32::MAX;

#[derive(Default)]
pub struct Builder<'src> {
    /// Syntax errors the parser recovered from, explained later with the
    /// context that only the caller has.
    pub recovered: Vec<ErrorRecovery<usize, Token<'src>, Infallible>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// An expression under construction.
pub struct Node {
    pub expr: Expr,
    depth: u32,
}

/// A call argument under construction.
pub struct ArgNode {
    pub name: Option<Ident>,
    pub value: Node,
    pub span: Span,
}

pub enum TrainItem {
    Target(TargetDecl),
    Setting(Setting),
}

impl Builder<'_> {
    pub fn leaf(kind: ExprKind, span: Span) -> Node {
        Node {
            expr: Expr { kind, span },
            depth: 1,
        }
    }

    /// A node above children of depth `below`; `anchor` is where to point if
    /// it is one level too many.
    fn nest(&mut self, below: u32, kind: ExprKind, span: Span, anchor: Span) -> Node {
        if below == TOO_DEEP {
            return placeholder(span);
        }
        if below >= MAX_DEPTH {
            self.diagnostics.push(
                Diagnostic::error("E0011", "expression nests too deeply")
                    .primary(anchor, format!("this is more than {MAX_DEPTH} levels deep"))
                    .note(format!(
                        "operators, calls and lists may nest at most {MAX_DEPTH} levels"
                    ))
                    .help("split the expression into several bindings, as in `h = x |> a |> b` and then `y = h |> c`"),
            );
            return placeholder(span);
        }
        Node {
            expr: Expr { kind, span },
            depth: below + 1,
        }
    }

    pub fn binary(&mut self, lhs: Node, op: BinOp, op_span: Span, rhs: Node) -> Node {
        let below = lhs.depth.max(rhs.depth);
        let span = lhs.expr.span.start..rhs.expr.span.end;
        let kind = ExprKind::Binary {
            op,
            lhs: Box::new(lhs.expr),
            rhs: Box::new(rhs.expr),
        };
        self.nest(below, kind, span, op_span)
    }

    pub fn pipe(&mut self, lhs: Node, op_span: Span, rhs: Node) -> Node {
        if rhs.depth != TOO_DEEP && !matches!(rhs.expr.kind, ExprKind::Name(_) | ExprKind::Call { .. }) {
            self.diagnostics.push(pipe_target_error(&op_span, &rhs.expr));
        }
        let below = lhs.depth.max(rhs.depth);
        let span = lhs.expr.span.start..rhs.expr.span.end;
        let kind = ExprKind::Pipe {
            lhs: Box::new(lhs.expr),
            rhs: Box::new(rhs.expr),
        };
        self.nest(below, kind, span, op_span)
    }

    /// `- - x`: the grammar collects the minus signs in a list rather than
    /// recursing, which keeps the parser's stack flat for long runs of them.
    pub fn negate(&mut self, minus_starts: Vec<usize>, operand: Node) -> Node {
        let mut node = operand;
        for start in minus_starts.into_iter().rev() {
            let span = start..node.expr.span.end;
            node = self.nest(node.depth, ExprKind::Neg(Box::new(node.expr)), span, start..start + 1);
        }
        node
    }

    pub fn call(&mut self, callee: Ident, args: Vec<ArgNode>, span: Span) -> Node {
        let below = args.iter().map(|a| a.value.depth).max().unwrap_or(0);
        let anchor = callee.span.clone();
        let args = args
            .into_iter()
            .map(|a| Arg {
                name: a.name,
                value: a.value.expr,
                span: a.span,
            })
            .collect();
        self.nest(below, ExprKind::Call { callee, args }, span, anchor)
    }

    pub fn list(&mut self, items: Vec<Node>, span: Span) -> Node {
        let below = items.iter().map(|n| n.depth).max().unwrap_or(0);
        let anchor = span.start..span.start + 1;
        let kind = ExprKind::List(items.into_iter().map(|n| n.expr).collect());
        self.nest(below, kind, span, anchor)
    }
}

/// Parentheses leave no node of their own; the expression inside takes
/// their span, so that a diagnostic about it underlines `(a + b)` whole.
pub fn parenthesized(mut inner: Node, span: Span) -> Node {
    inner.expr.span = span;
    inner
}

pub fn train_section(items: Vec<TrainItem>, span: Span) -> TrainSection {
    let mut section = TrainSection {
        targets: Vec::new(),
        settings: Vec::new(),
        span,
    };
    for item in items {
        match item {
            TrainItem::Target(t) => section.targets.push(t),
            TrainItem::Setting(s) => section.settings.push(s),
        }
    }
    section
}

/// Stands in for a subtree that was too deep. It only lives until the parse
/// ends, which then fails with the report, so it never reaches a later stage.
fn placeholder(span: Span) -> Node {
    Node {
        expr: Expr {
            kind: ExprKind::List(Vec::new()),
            span,
        },
        depth: TOO_DEEP,
    }
}

fn pipe_target_error(op_span: &Span, rhs: &Expr) -> Diagnostic {
    let d = Diagnostic::error("E0012", "expected a layer or function after `|>`")
        .primary(rhs.span.clone(), "not a name or a call")
        .secondary(op_span.clone(), "the value on the left is passed to what follows");
    match &rhs.kind {
        ExprKind::Binary { op, lhs, .. } if matches!(lhs.kind, ExprKind::Name(_) | ExprKind::Call { .. }) => {
            d.help(format!(
                "`|>` binds more loosely than `{}`; put the pipeline in parentheses, as in `(x |> f) {} y`",
                op.symbol(),
                op.symbol()
            ))
        }
        _ => d.note("`x |> f` means `f(x)`, and `x |> f(a)` means `f(x, a)`"),
    }
}
