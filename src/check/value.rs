//! Values of the language while a model is being built: tensors (graph
//! nodes), integers (possibly symbolic sizes), floats, strings, lists,
//! layers and callables.

use crate::diag::Span;
use crate::ir::{Dim, NodeId};

#[derive(Clone, Debug)]
pub enum Value {
    Tensor(NodeId),
    Int(Dim),
    Float(f64),
    Bool(bool),
    Str(String),
    List(Vec<(Value, Span)>),
    /// A declared layer, by index into the model's layer table.
    Layer(usize),
    /// A library function, layer type or block, by name.
    Callable(String),
    /// The result of an expression that already reported an error: it
    /// silences follow-up errors instead of cascading.
    Error,
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Tensor(_) => "a tensor",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Layer(_) => "a layer",
            Value::Callable(_) => "a function",
            Value::Error => "an erroneous value",
        }
    }
}

/// What a parameter of a library function accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tensor,
    /// A list of tensors (`concat([a, b])`).
    Tensors,
    Int,
    /// An integer or a pair `[h, w]`.
    Pair,
    Float,
    Bool,
    Str,
    /// A list of integers, possibly symbolic (`[B, -1]`).
    Shape,
    /// An axis or a list of axes.
    Axes,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Tensor => "a tensor",
            Kind::Tensors => "a list of tensors",
            Kind::Int => "an integer",
            Kind::Pair => "an integer or a pair [h, w]",
            Kind::Float => "a number",
            Kind::Bool => "true or false",
            Kind::Str => "a string",
            Kind::Shape => "a list of sizes",
            Kind::Axes => "an axis or a list of axes",
        }
    }
}

/// A default value written the way the documentation shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Default {
    Required,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
    /// Falls back to another parameter's value (`stride` defaults to `kernel`).
    SameAs(&'static str),
    /// Optional with no value (`None` in PyTorch).
    Absent,
}

#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub default: Default,
}

pub const fn req(name: &'static str, kind: Kind) -> Param {
    Param {
        name,
        kind,
        default: Default::Required,
    }
}

pub const fn opt(name: &'static str, kind: Kind, default: Default) -> Param {
    Param { name, kind, default }
}

impl Param {
    pub fn show_default(&self) -> String {
        match self.default {
            Default::Required => "required".into(),
            Default::Int(v) => v.to_string(),
            Default::Float(v) => format!("{v:?}"),
            Default::Bool(v) => v.to_string(),
            Default::Str(s) => format!("\"{s}\""),
            Default::SameAs(p) => format!("= {p}"),
            Default::Absent => "none".into(),
        }
    }
}

/// Arguments bound to a signature: one slot per parameter.
#[derive(Clone, Debug)]
pub struct Args {
    pub params: &'static [Param],
    pub values: Vec<Option<(Value, Span)>>,
    /// The whole call, for errors about the call itself.
    pub call_span: Span,
}

/// A problem with one argument or with the call as a whole.
#[derive(Clone, Debug)]
pub struct ArgError {
    pub param: Option<&'static str>,
    pub message: String,
    pub hint: Option<String>,
}

impl ArgError {
    pub fn at(param: &'static str, message: impl Into<String>) -> ArgError {
        ArgError {
            param: Some(param),
            message: message.into(),
            hint: None,
        }
    }

    pub fn call(message: impl Into<String>) -> ArgError {
        ArgError {
            param: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> ArgError {
        self.hint = Some(hint.into());
        self
    }
}

impl Args {
    fn slot(&self, name: &str) -> usize {
        self.params
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no parameter `{name}`"))
    }

    /// The argument's value, following `SameAs` defaults; `None` if absent.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let slot = self.slot(name);
        match (&self.values[slot], self.params[slot].default) {
            (Some((v, _)), _) => Some(v),
            (None, Default::SameAs(other)) => self.get(other),
            _ => None,
        }
    }

    pub fn span(&self, name: &str) -> Span {
        let slot = self.slot(name);
        match (&self.values[slot], self.params[slot].default) {
            (Some((_, s)), _) => s.clone(),
            (None, Default::SameAs(other)) => self.span(other),
            _ => self.call_span.clone(),
        }
    }

    pub fn is_given(&self, name: &str) -> bool {
        self.values[self.slot(name)].is_some()
    }

    fn default(&self, name: &str) -> Default {
        self.params[self.slot(name)].default
    }

    pub fn tensor(&self, name: &'static str) -> Result<NodeId, ArgError> {
        match self.get(name) {
            Some(Value::Tensor(id)) => Ok(*id),
            other => Err(wrong(name, Kind::Tensor, other)),
        }
    }

    pub fn opt_tensor(&self, name: &'static str) -> Result<Option<NodeId>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Tensor(id)) => Ok(Some(*id)),
            other => Err(wrong(name, Kind::Tensor, other)),
        }
    }

    pub fn tensors(&self, name: &'static str) -> Result<Vec<NodeId>, ArgError> {
        match self.get(name) {
            Some(Value::List(items)) if !items.is_empty() => items
                .iter()
                .map(|(v, _)| match v {
                    Value::Tensor(id) => Ok(*id),
                    other => Err(wrong(name, Kind::Tensors, Some(other))),
                })
                .collect(),
            other => Err(wrong(name, Kind::Tensors, other)),
        }
    }

    /// An integer argument, possibly symbolic.
    pub fn dim(&self, name: &'static str) -> Result<Dim, ArgError> {
        match (self.get(name), self.default(name)) {
            (Some(Value::Int(d)), _) => Ok(d.clone()),
            (None, Default::Int(v)) => Ok(Dim::lit(v)),
            (other, _) => Err(wrong(name, Kind::Int, other)),
        }
    }

    /// An integer argument that must be a known number.
    pub fn int(&self, name: &'static str) -> Result<i64, ArgError> {
        let d = self.dim(name)?;
        d.as_const().ok_or_else(|| {
            ArgError::at(name, format!("`{name}` must be a known number, but it is `{d}`"))
                .hint("layer sizes cannot depend on symbolic dimensions such as B")
        })
    }

    /// A positive integer argument.
    pub fn positive(&self, name: &'static str) -> Result<usize, ArgError> {
        let v = self.int(name)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| ArgError::at(name, format!("`{name}` must be positive, got {v}")))
    }

    /// A non-negative integer argument.
    pub fn count(&self, name: &'static str) -> Result<usize, ArgError> {
        let v = self.int(name)?;
        usize::try_from(v).map_err(|_| ArgError::at(name, format!("`{name}` must not be negative, got {v}")))
    }

    /// An integer or `[h, w]` pair, each at least `min`.
    pub fn pair(&self, name: &'static str, min: usize) -> Result<[usize; 2], ArgError> {
        let check = |v: i64| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v >= min)
                .ok_or_else(|| ArgError::at(name, format!("`{name}` must be at least {min}, got {v}")))
        };
        match (self.get(name), self.default(name)) {
            (Some(Value::Int(d)), _) => {
                let v = check(
                    d.as_const()
                        .ok_or_else(|| ArgError::at(name, format!("`{name}` must be a known number")))?,
                )?;
                Ok([v, v])
            }
            (Some(Value::List(items)), _) if items.len() == 2 => {
                let mut out = [0; 2];
                for (slot, (v, _)) in out.iter_mut().zip(items) {
                    match v {
                        Value::Int(d) if d.as_const().is_some() => *slot = check(d.as_const().unwrap_or(0))?,
                        other => return Err(wrong(name, Kind::Pair, Some(other))),
                    }
                }
                Ok(out)
            }
            (None, Default::Int(v)) => {
                let v = check(v)?;
                Ok([v, v])
            }
            (other, _) => Err(wrong(name, Kind::Pair, other)),
        }
    }

    pub fn float(&self, name: &'static str) -> Result<f64, ArgError> {
        match (self.get(name), self.default(name)) {
            (Some(Value::Float(v)), _) => Ok(*v),
            (Some(Value::Int(d)), _) if d.as_const().is_some() => Ok(d.as_const().unwrap_or(0) as f64),
            (None, Default::Float(v)) => Ok(v),
            (other, _) => Err(wrong(name, Kind::Float, other)),
        }
    }

    pub fn opt_float(&self, name: &'static str) -> Result<Option<f64>, ArgError> {
        if self.get(name).is_none() && self.default(name) == Default::Absent {
            return Ok(None);
        }
        self.float(name).map(Some)
    }

    pub fn bool(&self, name: &'static str) -> Result<bool, ArgError> {
        match (self.get(name), self.default(name)) {
            (Some(Value::Bool(b)), _) => Ok(*b),
            (None, Default::Bool(b)) => Ok(b),
            (other, _) => Err(wrong(name, Kind::Bool, other)),
        }
    }

    pub fn str(&self, name: &'static str) -> Result<String, ArgError> {
        match (self.get(name), self.default(name)) {
            (Some(Value::Str(s)), _) => Ok(s.clone()),
            (None, Default::Str(s)) => Ok(s.to_string()),
            (other, _) => Err(wrong(name, Kind::Str, other)),
        }
    }

    /// A list of sizes; `-1` entries are kept as the constant -1.
    pub fn shape(&self, name: &'static str) -> Result<Vec<Dim>, ArgError> {
        match self.get(name) {
            Some(Value::List(items)) => items
                .iter()
                .map(|(v, _)| match v {
                    Value::Int(d) => Ok(d.clone()),
                    other => Err(wrong(name, Kind::Shape, Some(other))),
                })
                .collect(),
            other => Err(wrong(name, Kind::Shape, other)),
        }
    }
}

fn wrong(name: &'static str, kind: Kind, got: Option<&Value>) -> ArgError {
    match got {
        None => ArgError::at(name, format!("missing argument `{name}` ({})", kind.describe())),
        Some(v) => ArgError::at(
            name,
            format!("`{name}` expects {}, found {}", kind.describe(), v.kind()),
        ),
    }
}
