//! The syntax tree of a `.net` file. Every node keeps the byte span it was
//! parsed from, so later stages can point back at the source.

use crate::diag::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Model(Model),
    Block(Block),
}

/// `model name { statements }`
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: Ident,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// `block name(params) { statements; return expr }`
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub name: Ident,
    pub params: Vec<Ident>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `input image: f32[B, 3, 32, 32]`
    Input { name: Ident, ty: TypeExpr, span: Span },
    /// `name = expr`: a layer declaration when `expr` constructs a layer,
    /// otherwise a value binding.
    Let { name: Ident, value: Expr, span: Span },
    /// `output logits` or `output probs = softmax(logits, dim: 1)`
    Output {
        name: Ident,
        value: Option<Expr>,
        span: Span,
    },
    /// `return expr` (blocks only)
    Return { value: Expr, span: Span },
    /// `train { ... }`
    Train(TrainSection),
}

impl Stmt {
    pub fn span(&self) -> &Span {
        match self {
            Stmt::Input { span, .. }
            | Stmt::Let { span, .. }
            | Stmt::Output { span, .. }
            | Stmt::Return { span, .. } => span,
            Stmt::Train(t) => &t.span,
        }
    }
}

/// `f32[B, 3, 32, 32]`; dimensions are integer expressions over symbols.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeExpr {
    pub dtype: Ident,
    pub dims: Vec<Expr>,
    pub span: Span,
}

/// The `train { ... }` section: `target` declarations and `key: value` settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSection {
    pub targets: Vec<TargetDecl>,
    pub settings: Vec<Setting>,
    pub span: Span,
}

/// `target label: i64[B]`: a data field that the loss reads but the model does not.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub span: Span,
}

/// `optimizer: Adam(lr: 1e-3)`
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub key: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Name(Ident),
    /// `[B, -1]`
    List(Vec<Expr>),
    /// `callee(args)`
    Call {
        callee: Ident,
        args: Vec<Arg>,
    },
    /// `lhs |> rhs`: `rhs` is a name or a call; `lhs` becomes its first argument.
    Pipe {
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Neg(Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `//`: floor division, for integer shape arithmetic.
    FloorDiv,
    Rem,
    /// `@`: matrix product.
    MatMul,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::FloorDiv => "//",
            BinOp::Rem => "%",
            BinOp::MatMul => "@",
        }
    }
}

/// A call argument, positional or `name: value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}
