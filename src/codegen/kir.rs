//! The kernel-level representation: a small, typed subset of CUDA C that
//! every op lowers to and that one printer (`cuda.rs`) turns into text.
//! Constructors fold constants and drop identities, so index arithmetic in
//! the printed kernels stays readable.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CTy {
    F32,
    /// Accumulators only: the CPU schedules sum long reductions in double.
    F64,
    I32,
    I64,
    U32,
    Bool,
}

impl CTy {
    pub fn c_name(self) -> &'static str {
        match self {
            CTy::F32 => "float",
            CTy::F64 => "double",
            CTy::I32 => "int",
            CTy::I64 => "long long",
            CTy::U32 => "unsigned int",
            CTy::Bool => "bool",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum KExpr {
    Var(String),
    Int(i64),
    F32(f32),
    Bin(BinOp, Box<KExpr>, Box<KExpr>),
    Neg(Box<KExpr>),
    Not(Box<KExpr>),
    Call(&'static str, Vec<KExpr>),
    Select(Box<KExpr>, Box<KExpr>, Box<KExpr>),
    Load(String, Box<KExpr>),
    Cast(CTy, Box<KExpr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }

    /// C precedence: higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Mul | BinOp::Div | BinOp::Rem => 10,
            BinOp::Add | BinOp::Sub => 9,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 7,
            BinOp::Eq | BinOp::Ne => 6,
            BinOp::And => 3,
            BinOp::Or => 2,
        }
    }
}

pub fn var(name: impl Into<String>) -> KExpr {
    KExpr::Var(name.into())
}

pub fn int(v: i64) -> KExpr {
    KExpr::Int(v)
}

pub fn f32c(v: f64) -> KExpr {
    KExpr::F32(v as f32)
}

pub fn load(buf: impl Into<String>, index: KExpr) -> KExpr {
    KExpr::Load(buf.into(), Box::new(index))
}

pub fn call(f: &'static str, args: Vec<KExpr>) -> KExpr {
    KExpr::Call(f, args)
}

pub fn cast(ty: CTy, e: KExpr) -> KExpr {
    KExpr::Cast(ty, Box::new(e))
}

pub fn select(c: KExpr, a: KExpr, b: KExpr) -> KExpr {
    if a == b {
        return a;
    }
    KExpr::Select(Box::new(c), Box::new(a), Box::new(b))
}

impl KExpr {
    pub fn bin(op: BinOp, a: KExpr, b: KExpr) -> KExpr {
        use KExpr::Int;
        match (op, &a, &b) {
            (BinOp::Add, Int(x), Int(y)) => Int(x + y),
            (BinOp::Sub, Int(x), Int(y)) => Int(x - y),
            (BinOp::Mul, Int(x), Int(y)) => Int(x * y),
            (BinOp::Div, Int(x), Int(y)) if *y != 0 => Int(x / y),
            (BinOp::Rem, Int(x), Int(y)) if *y != 0 => Int(x % y),
            (BinOp::Add, Int(0), _) => b,
            (BinOp::Add | BinOp::Sub, _, Int(0)) => a,
            (BinOp::Mul, Int(0), _) | (BinOp::Mul, _, Int(0)) => Int(0),
            (BinOp::Mul, Int(1), _) => b,
            (BinOp::Mul | BinOp::Div, _, Int(1)) => a,
            (BinOp::Rem, _, Int(1)) => Int(0),
            (BinOp::Lt, Int(x), Int(y)) => KExpr::bool(x < y),
            (BinOp::Ge, Int(x), Int(y)) => KExpr::bool(x >= y),
            (BinOp::And, Int(1), _) => b,
            (BinOp::And, _, Int(1)) => a,
            _ => KExpr::Bin(op, Box::new(a), Box::new(b)),
        }
    }

    /// `true`/`false` as the integers 1/0, which the folding above understands.
    pub fn bool(b: bool) -> KExpr {
        KExpr::Int(i64::from(b))
    }

    pub fn is_int(&self, v: i64) -> bool {
        matches!(self, KExpr::Int(x) if *x == v)
    }

    pub fn lt(self, o: KExpr) -> KExpr {
        KExpr::bin(BinOp::Lt, self, o)
    }
    pub fn le(self, o: KExpr) -> KExpr {
        KExpr::bin(BinOp::Le, self, o)
    }
    pub fn ge(self, o: KExpr) -> KExpr {
        KExpr::bin(BinOp::Ge, self, o)
    }
    pub fn gt(self, o: KExpr) -> KExpr {
        KExpr::bin(BinOp::Gt, self, o)
    }
    pub fn eq(self, o: KExpr) -> KExpr {
        KExpr::bin(BinOp::Eq, self, o)
    }
    pub fn and(self, o: KExpr) -> KExpr {
        KExpr::bin(BinOp::And, self, o)
    }
    /// `self % o`, C's remainder.
    pub fn modulo(self, o: KExpr) -> KExpr {
        KExpr::bin(BinOp::Rem, self, o)
    }
}

macro_rules! kexpr_op {
    ($trait:ident, $method:ident, $op:expr) => {
        impl std::ops::$trait for KExpr {
            type Output = KExpr;
            fn $method(self, rhs: KExpr) -> KExpr {
                KExpr::bin($op, self, rhs)
            }
        }
        impl std::ops::$trait<i64> for KExpr {
            type Output = KExpr;
            fn $method(self, rhs: i64) -> KExpr {
                KExpr::bin($op, self, KExpr::Int(rhs))
            }
        }
    };
}
kexpr_op!(Add, add, BinOp::Add);
kexpr_op!(Sub, sub, BinOp::Sub);
kexpr_op!(Mul, mul, BinOp::Mul);
kexpr_op!(Div, div, BinOp::Div);

impl std::ops::Neg for KExpr {
    type Output = KExpr;
    fn neg(self) -> KExpr {
        match self {
            KExpr::Int(v) => KExpr::Int(-v),
            KExpr::F32(v) => KExpr::F32(-v),
            KExpr::Neg(inner) => *inner,
            e => KExpr::Neg(Box::new(e)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum KStmt {
    /// `const ty name = value;` (or without `const` when `mutable`).
    Let {
        ty: CTy,
        name: String,
        value: KExpr,
        mutable: bool,
    },
    /// `target op value;` where target is a variable or a load (a store).
    Assign {
        target: KExpr,
        op: AssignOp,
        value: KExpr,
    },
    /// `for (int var = start; var < end; var += step)`
    For {
        var: String,
        start: KExpr,
        end: KExpr,
        step: KExpr,
        body: Vec<KStmt>,
        hint: LoopHint,
    },
    If {
        cond: KExpr,
        then: Vec<KStmt>,
        otherwise: Vec<KStmt>,
    },
    Return,
    SyncThreads,
    /// `__shared__ ty name[len];`
    Shared {
        ty: CTy,
        name: String,
        len: usize,
    },
    /// A local array, `ty name[len];`
    Array {
        ty: CTy,
        name: String,
        len: usize,
    },
    Comment(String),
}

/// What the compilers may do with a loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoopHint {
    /// The compiler decides.
    Compiler,
    /// `#pragma unroll`: small constant trip counts that index register arrays.
    Unroll,
    /// `#pragma unroll 1`: CPU-schedule loops over local arrays, which a
    /// GPU compile would otherwise unroll into spilled registers.
    NoUnroll,
    /// A sum into this variable (or the first `len` elements of this
    /// array) that the host compiler may vectorise (reassociate), through
    /// `NETC_SIMD_SUM` from netc.cuh.
    VectorizeSum { var: String, len: Option<usize> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    Set,
    Add,
}

/// A buffer parameter of a kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KParam {
    pub name: String,
    pub ty: CTy,
    /// Read-only buffers are `const T* __restrict__`.
    pub is_const: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    /// Comment lines printed above the kernel: what it computes, from which nodes and lines.
    pub doc: Vec<String>,
    pub params: Vec<KParam>,
    pub body: Vec<KStmt>,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Uses `__syncthreads`, shared memory or warp shuffles: the host shim
    /// must run its threads as interleaving fibers.
    pub cooperative: bool,
}

impl Kernel {
    pub fn threads_per_block(&self) -> u32 {
        self.block.iter().product()
    }
}

impl fmt::Display for CTy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.c_name())
    }
}
