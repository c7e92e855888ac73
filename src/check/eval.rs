//! The checker proper: walks a model's statements in order, keeping a scope
//! of names, and builds the graph as it goes.

use super::library::{self, Ctx, Layer, LibError, ModelState};
use super::value::{ArgError, Args, Kind, Value};
use super::{Checked, Mode, Model};
use crate::diag::{did_you_mean, Diagnostic, Span};
use crate::ir::expr::{arg, SExpr};
use crate::ir::{Dim, Graph, NodeId, Origin, TensorType};
use crate::ops::{Input, MatMul, Op};
use crate::syntax::ast::{self, BinOp, ExprKind};
use crate::tensor::DType;
use std::collections::{HashMap, HashSet};

/// Blocks may call blocks; deeper than this is surely runaway recursion.
const MAX_BLOCK_DEPTH: usize = 64;

pub struct Checker<'a> {
    ast: &'a ast::File,
    mode: Mode,
    blocks: HashMap<&'a str, &'a ast::Block>,
    diags: Vec<Diagnostic>,
    errors: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BindingKind {
    Input,
    Layer,
    Value,
    BlockParam,
}

struct Binding {
    value: Value,
    span: Span,
    used: bool,
    kind: BindingKind,
}

/// Names visible in a model body or a block instance.
struct Scope {
    bindings: HashMap<String, Binding>,
    order: Vec<String>,
    /// Names bound further down in this body, for "used before defined".
    later: HashMap<String, Span>,
    /// Prefix of parameter names (`res1` inside an instance of a block).
    prefix: String,
    /// Names for block instances created by the binding being evaluated.
    instances: Option<InstanceNames>,
}

struct InstanceNames {
    base: String,
    total: usize,
    next: usize,
}

struct LayerEntry {
    name: String,
    layer: Box<dyn Layer>,
    used: bool,
    decl_span: Span,
}

/// Everything one model's build accumulates.
struct Build {
    graph: Graph,
    state: ModelState,
    layers: Vec<LayerEntry>,
    symbols: HashSet<String>,
    block_stack: Vec<String>,
    train: Option<ast::TrainSection>,
}

impl<'a> Checker<'a> {
    pub fn new(ast: &'a ast::File, mode: Mode) -> Checker<'a> {
        Checker {
            ast,
            mode,
            blocks: HashMap::new(),
            diags: Vec::new(),
            errors: 0,
        }
    }

    pub fn run(mut self) -> Checked {
        let mut item_names: HashMap<&str, Span> = HashMap::new();
        for item in &self.ast.items {
            let (name, kind) = match item {
                ast::Item::Model(m) => (&m.name, "model"),
                ast::Item::Block(b) => (&b.name, "block"),
            };
            if let Some(first) = item_names.get(name.name.as_str()) {
                let d = Diagnostic::error("E0103", format!("the {kind} name `{}` is defined twice", name.name))
                    .primary(name.span.clone(), "defined again here")
                    .secondary(first.clone(), "first defined here");
                self.report(d);
                continue;
            }
            item_names.insert(&name.name, name.span.clone());
            if let ast::Item::Block(b) = item {
                if library::function(&b.name.name).is_some() || library::layer_type(&b.name.name).is_some() {
                    let d = Diagnostic::error("E0103", format!("block `{}` has the name of a built-in", b.name.name))
                        .primary(b.name.span.clone(), "this name is taken by the library")
                        .help("rename the block");
                    self.report(d);
                    continue;
                }
                self.blocks.insert(&b.name.name, b);
            }
        }
        let models: Vec<&ast::Model> = self
            .ast
            .items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Model(m) => Some(m),
                _ => None,
            })
            .collect();
        if models.is_empty() && self.errors == 0 {
            self.report(
                Diagnostic::error("E0100", "this file defines no model")
                    .primary(0..0, "expected `model NAME { ... }`")
                    .help("a `.net` file needs at least one `model` block"),
            );
        }
        let mut built = Vec::new();
        for m in models {
            if let Some(model) = self.model(m) {
                built.push(model);
            }
        }
        self.diags.sort_by_key(|d| d.primary_span().map_or(0, |s| s.start));
        let mut seen = HashSet::new();
        self.diags
            .retain(|d| seen.insert((d.message.clone(), d.primary_span().map(|s| (s.start, s.end)))));
        Checked {
            models: built,
            diagnostics: self.diags,
        }
    }

    fn report(&mut self, d: Diagnostic) {
        if d.is_error() {
            self.errors += 1;
        }
        self.diags.push(d);
    }

    fn model(&mut self, m: &ast::Model) -> Option<Model> {
        let errors_before = self.errors;
        let mut b = Build {
            graph: Graph::new(m.name.name.clone()),
            state: ModelState::default(),
            layers: Vec::new(),
            symbols: HashSet::new(),
            block_stack: Vec::new(),
            train: None,
        };
        let mut scope = Scope::new(String::new(), &m.body);
        let mut outputs: HashMap<String, Span> = HashMap::new();
        for stmt in &m.body {
            match stmt {
                ast::Stmt::Input { name, ty, span } => self.input(&mut b, &mut scope, name, ty, span),
                ast::Stmt::Let { name, value, .. } => {
                    let v = self.binding_value(&mut b, &mut scope, name, value);
                    let kind = if matches!(v, Value::Layer(_)) {
                        BindingKind::Layer
                    } else {
                        BindingKind::Value
                    };
                    self.define(&mut scope, name, v, kind);
                }
                ast::Stmt::Output { name, value, span } => {
                    self.output(&mut b, &mut scope, &mut outputs, name, value.as_ref(), span)
                }
                ast::Stmt::Return { span, .. } => self.report(
                    Diagnostic::error("E0400", "`return` outside of a block")
                        .primary(span.clone(), "models name their results with `output`")
                        .help("write `output NAME = EXPR`"),
                ),
                ast::Stmt::Train(t) => {
                    if b.train.is_some() {
                        self.report(
                            Diagnostic::error("E0103", "a model has one `train` section")
                                .primary(t.span.clone(), "second `train` section"),
                        );
                    }
                    b.train = Some(t.clone());
                }
            }
        }
        if b.graph.outputs.is_empty() && self.errors == errors_before {
            self.report(
                Diagnostic::error("E0100", format!("model `{}` has no outputs", m.name.name))
                    .primary(m.name.span.clone(), "this model produces nothing")
                    .help("name a result with `output NAME`"),
            );
        }
        let mut targets = Vec::new();
        let mut loss = None;
        if let Some(t) = b.train.clone() {
            for decl in &t.targets {
                self.input(&mut b, &mut scope, &decl.name, &decl.ty, &decl.span);
                if let Some(binding) = scope.bindings.get_mut(&decl.name.name) {
                    binding.used = true;
                    if let Value::Tensor(id) = binding.value {
                        targets.push(id);
                    }
                }
            }
            loss = self.loss(&mut b, &mut scope, &t);
        }
        // After an error the rest of an expression is not evaluated, so
        // "unused" warnings would mostly echo it.
        if self.errors > errors_before {
            return None;
        }
        self.warn_unused(&scope, &b, &outputs);
        Some(Model {
            name: m.name.name.clone(),
            graph: b.graph,
            mode: self.mode,
            state_updates: b.state.state_updates,
            seed: b.state.seed,
            train: b.train,
            targets,
            loss,
            classification: b.state.classification,
        })
    }

    /// The `loss:` setting, evaluated among the model's names and targets.
    fn loss(&mut self, b: &mut Build, scope: &mut Scope, t: &ast::TrainSection) -> Option<NodeId> {
        let setting = t.settings.iter().find(|s| s.key.name == "loss")?;
        match self.expr_named(b, scope, &setting.value, "loss") {
            Value::Tensor(id) if b.graph.ty(id).shape.is_empty() && b.graph.ty(id).dtype.is_float() => Some(id),
            Value::Tensor(id) => {
                let ty = b.graph.ty(id).clone();
                self.report(
                    Diagnostic::error("E0300", format!("the loss must be a floating-point scalar, found {ty}"))
                        .primary(setting.value.span.clone(), "not a scalar")
                        .help("reduce it, e.g. `mean(x, [0, 1])`, or use a loss function such as cross_entropy"),
                );
                None
            }
            Value::Error => None,
            other => {
                self.report(
                    Diagnostic::error("E0200", format!("the loss must be a tensor, found {}", other.kind()))
                        .primary(setting.value.span.clone(), "not a loss"),
                );
                None
            }
        }
    }

    fn warn_unused(&mut self, scope: &Scope, b: &Build, outputs: &HashMap<String, Span>) {
        for entry in b.layers.iter().filter(|l| !l.used) {
            self.report(
                Diagnostic::warning("W0001", format!("unused layer `{}`", entry.name))
                    .primary(entry.decl_span.clone(), "declared here but never applied")
                    .note("its parameters are still created, initialised and saved")
                    .help("apply it in the forward pass, or remove it"),
            );
        }
        for name in &scope.order {
            let binding = &scope.bindings[name];
            if binding.used || outputs.contains_key(name) || binding.kind == BindingKind::Layer || name.starts_with('_')
            {
                continue;
            }
            let what = if binding.kind == BindingKind::Input {
                "input"
            } else {
                "value"
            };
            self.report(
                Diagnostic::warning("W0002", format!("unused {what} `{name}`"))
                    .primary(binding.span.clone(), "never used")
                    .help(format!("use it, or prefix its name with `_`: `_{name}`")),
            );
        }
    }

    fn input(&mut self, b: &mut Build, scope: &mut Scope, name: &ast::Ident, ty: &ast::TypeExpr, span: &Span) {
        let Some(ty) = self.tensor_type(b, scope, ty) else {
            self.define(scope, name, Value::Error, BindingKind::Input);
            return;
        };
        let op = Input {
            name: name.name.clone(),
            ty: ty.clone(),
        };
        let id = b
            .graph
            .add_typed(op.into(), &[], ty, Origin::new(name.name.clone(), Some(span.clone())));
        b.graph.inputs.push(id);
        self.define(scope, name, Value::Tensor(id), BindingKind::Input);
    }

    /// `f32[B, 3, 32, 32]`: names in sizes that are not bound are size symbols.
    fn tensor_type(&mut self, b: &mut Build, scope: &mut Scope, ty: &ast::TypeExpr) -> Option<TensorType> {
        let dtype = match DType::from_name(&ty.dtype.name) {
            Some(d @ (DType::F32 | DType::I64)) => d,
            Some(DType::F64) => {
                self.report(
                    Diagnostic::error("E0301", "kernels compute in f32; inputs cannot be f64")
                        .primary(ty.dtype.span.clone(), "unsupported dtype")
                        .help("declare the input as f32; netc converts f64 data when it loads it"),
                );
                return None;
            }
            None => {
                let mut d = Diagnostic::error("E0101", format!("unknown dtype `{}`", ty.dtype.name))
                    .primary(ty.dtype.span.clone(), "not a dtype");
                d = match did_you_mean(&ty.dtype.name, ["f32", "i64"]) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help("tensors are f32 (values) or i64 (indices, labels)"),
                };
                self.report(d);
                return None;
            }
        };
        let mut shape = Vec::new();
        for dim in &ty.dims {
            collect_symbols(dim, scope, &mut b.symbols);
            match self.expr(b, scope, dim) {
                Value::Int(d) => {
                    if d.as_const().is_some_and(|v| v <= 0) {
                        self.report(
                            Diagnostic::error("E0200", format!("a size must be positive, got {d}"))
                                .primary(dim.span.clone(), "not a positive size"),
                        );
                        return None;
                    }
                    shape.push(d)
                }
                Value::Error => return None,
                other => {
                    self.report(
                        Diagnostic::error("E0200", format!("a size must be an integer, found {}", other.kind()))
                            .primary(dim.span.clone(), "not a size"),
                    );
                    return None;
                }
            }
        }
        Some(TensorType::new(dtype, shape))
    }

    fn output(
        &mut self,
        b: &mut Build,
        scope: &mut Scope,
        outputs: &mut HashMap<String, Span>,
        name: &ast::Ident,
        value: Option<&ast::Expr>,
        span: &Span,
    ) {
        let v = match value {
            Some(e) => {
                let v = self.binding_value(b, scope, name, e);
                self.define(scope, name, v.clone(), BindingKind::Value);
                v
            }
            None => self.lookup(b, scope, name),
        };
        if let Some(first) = outputs.get(&name.name) {
            let d = Diagnostic::error("E0103", format!("output `{}` is declared twice", name.name))
                .primary(name.span.clone(), "declared again here")
                .secondary(first.clone(), "first declared here");
            self.report(d);
            return;
        }
        outputs.insert(name.name.clone(), name.span.clone());
        match v {
            Value::Tensor(id) => b.graph.outputs.push((name.name.clone(), id)),
            Value::Error => {}
            other => self.report(
                Diagnostic::error(
                    "E0200",
                    format!("an output must be a tensor, but `{}` is {}", name.name, other.kind()),
                )
                .primary(span.clone(), "not a tensor"),
            ),
        }
    }

    fn define(&mut self, scope: &mut Scope, name: &ast::Ident, value: Value, kind: BindingKind) {
        if let Some(first) = scope.bindings.get(&name.name) {
            let d = Diagnostic::error("E0103", format!("the name `{}` is defined twice", name.name))
                .primary(name.span.clone(), "defined again here")
                .secondary(first.span.clone(), "first defined here")
                .help("give each layer and value its own name");
            self.report(d);
            return;
        }
        scope.later.remove(&name.name);
        scope.order.push(name.name.clone());
        scope.bindings.insert(
            name.name.clone(),
            Binding {
                value,
                span: name.span.clone(),
                used: false,
                kind,
            },
        );
    }

    /// The value of `name = expr`: declares a layer when `expr` constructs one.
    fn binding_value(&mut self, b: &mut Build, scope: &mut Scope, name: &ast::Ident, e: &ast::Expr) -> Value {
        if let ExprKind::Call { callee, args } = &e.kind {
            if let Some(lt) = library::layer_type(&callee.name) {
                return self.declare_layer(b, scope, name, lt, args, &e.span);
            }
        }
        let calls = count_block_calls(e, &self.blocks);
        scope.instances = (calls > 0).then(|| InstanceNames {
            base: name.name.clone(),
            total: calls,
            next: 0,
        });
        let v = self.expr_named(b, scope, e, &name.name);
        scope.instances = None;
        v
    }

    fn declare_layer(
        &mut self,
        b: &mut Build,
        scope: &mut Scope,
        name: &ast::Ident,
        lt: &'static library::LayerType,
        args: &[ast::Arg],
        span: &Span,
    ) -> Value {
        let Some(args) = self.bind_args(b, scope, lt.name, lt.params, args, None, span) else {
            return Value::Error;
        };
        let full = qualified(&scope.prefix, &name.name);
        let mut ctx = Ctx {
            g: &mut b.graph,
            state: &mut b.state,
            origin: Origin::new(full.clone(), Some(span.clone())),
            mode: self.mode,
        };
        match (lt.declare)(&mut ctx, &args, &full, span) {
            Ok(layer) => {
                b.layers.push(LayerEntry {
                    name: full,
                    layer,
                    used: false,
                    decl_span: name.span.clone(),
                });
                Value::Layer(b.layers.len() - 1)
            }
            Err(e) => {
                self.lib_error(e, lt.name, &args, span);
                Value::Error
            }
        }
    }

    fn expr(&mut self, b: &mut Build, scope: &mut Scope, e: &ast::Expr) -> Value {
        self.expr_named(b, scope, e, "")
    }

    /// Evaluates an expression; `label` names the nodes it creates when no
    /// function or layer name is more telling (binary operators).
    fn expr_named(&mut self, b: &mut Build, scope: &mut Scope, e: &ast::Expr, label: &str) -> Value {
        match &e.kind {
            ExprKind::Int(v) => Value::Int(Dim::lit(*v)),
            ExprKind::Float(v) => Value::Float(*v),
            ExprKind::Str(s) => Value::Str(s.clone()),
            ExprKind::Bool(v) => Value::Bool(*v),
            ExprKind::Name(id) => self.lookup(b, scope, id),
            ExprKind::List(items) => {
                let mut out = Vec::new();
                for item in items {
                    match self.expr_named(b, scope, item, label) {
                        Value::Error => return Value::Error,
                        v => out.push((v, item.span.clone())),
                    }
                }
                Value::List(out)
            }
            ExprKind::Call { callee, args } => self.call(b, scope, callee, args, None, &e.span),
            ExprKind::Pipe { lhs, rhs } => {
                let v = self.expr_named(b, scope, lhs, label);
                if matches!(v, Value::Error) {
                    return Value::Error;
                }
                let piped = Some((v, lhs.span.clone()));
                match &rhs.kind {
                    ExprKind::Name(id) => self.call(b, scope, id, &[], piped, &rhs.span),
                    ExprKind::Call { callee, args } => self.call(b, scope, callee, args, piped, &rhs.span),
                    _ => {
                        self.report(
                            Diagnostic::error("E0200", "the right side of `|>` must be a function, layer or block")
                                .primary(rhs.span.clone(), "cannot pipe into this")
                                .help("write `x |> relu`, `x |> conv1` or `x |> max_pool2d(2)`"),
                        );
                        Value::Error
                    }
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.expr_named(b, scope, lhs, label);
                let r = self.expr_named(b, scope, rhs, label);
                self.binary(b, *op, (l, &lhs.span), (r, &rhs.span), &e.span, label)
            }
            ExprKind::Neg(inner) => match self.expr_named(b, scope, inner, label) {
                Value::Int(d) => Value::Int(d.neg()),
                Value::Float(v) => Value::Float(-v),
                Value::Tensor(id) => self.map(
                    b,
                    -arg(0),
                    &[(id, &inner.span)],
                    &e.span,
                    if label.is_empty() { "neg" } else { label },
                ),
                Value::Error => Value::Error,
                other => {
                    self.report(
                        Diagnostic::error("E0200", format!("cannot negate {}", other.kind()))
                            .primary(e.span.clone(), "here"),
                    );
                    Value::Error
                }
            },
        }
    }

    fn lookup(&mut self, b: &mut Build, scope: &mut Scope, id: &ast::Ident) -> Value {
        if let Some(binding) = scope.bindings.get_mut(&id.name) {
            binding.used = true;
            return binding.value.clone();
        }
        if b.symbols.contains(&id.name) {
            return Value::Int(Dim::sym(&id.name));
        }
        if library::function(&id.name).is_some()
            || library::layer_type(&id.name).is_some()
            || self.blocks.contains_key(id.name.as_str())
        {
            return Value::Callable(id.name.clone());
        }
        if let Some(def) = scope.later.get(&id.name) {
            let d = Diagnostic::error("E0102", format!("`{}` is used before it is defined", id.name))
                .primary(id.span.clone(), "used here")
                .secondary(def.clone(), "defined here, later")
                .help("statements run in order: move the definition above its first use");
            self.report(d);
            return Value::Error;
        }
        let d = Diagnostic::error("E0100", format!("cannot find `{}` in this scope", id.name))
            .primary(id.span.clone(), "not found");
        let d = self.suggest(d, scope, &id.name);
        self.report(d);
        Value::Error
    }

    fn suggest(&self, d: Diagnostic, scope: &Scope, name: &str) -> Diagnostic {
        let mut candidates: Vec<String> = scope.bindings.keys().cloned().collect();
        candidates.extend(library::all_names().map(String::from));
        candidates.extend(self.blocks.keys().map(|k| k.to_string()));
        match did_you_mean(name, candidates.iter().map(String::as_str)) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        b: &mut Build,
        scope: &mut Scope,
        callee: &ast::Ident,
        args: &[ast::Arg],
        piped: Option<(Value, Span)>,
        span: &Span,
    ) -> Value {
        if let Some(binding) = scope.bindings.get_mut(&callee.name) {
            binding.used = true;
            return match binding.value.clone() {
                Value::Layer(index) => self.apply_layer(b, scope, index, callee, args, piped, span),
                Value::Error => Value::Error,
                other => {
                    self.report(
                        Diagnostic::error(
                            "E0200",
                            format!("`{}` is {}, not a function or layer", callee.name, other.kind()),
                        )
                        .primary(callee.span.clone(), "cannot be called")
                        .secondary(binding_span(scope, &callee.name), "defined here"),
                    );
                    Value::Error
                }
            };
        }
        if let Some(f) = library::function(&callee.name) {
            let Some(bound) = self.bind_args(b, scope, f.name, f.params, args, piped, span) else {
                return Value::Error;
            };
            let mut ctx = Ctx {
                g: &mut b.graph,
                state: &mut b.state,
                origin: Origin::new(f.name, Some(span.clone())),
                mode: self.mode,
            };
            return match (f.build)(&mut ctx, &bound) {
                Ok(v) => v,
                Err(e) => {
                    self.lib_error(e, f.name, &bound, span);
                    Value::Error
                }
            };
        }
        if library::layer_type(&callee.name).is_some() {
            self.report(
                Diagnostic::error(
                    "E0200",
                    format!("`{}` is a layer type: declare it before applying it", callee.name),
                )
                .primary(span.clone(), "a layer constructed inside an expression")
                .help(format!(
                    "declare it on its own line, `name = {}(...)`, then apply it with `x |> name`",
                    callee.name
                )),
            );
            return Value::Error;
        }
        if let Some(block) = self.blocks.get(callee.name.as_str()).copied() {
            return self.call_block(b, scope, block, args, piped, span);
        }
        if let Some(def) = scope.later.get(&callee.name) {
            let d = Diagnostic::error("E0102", format!("`{}` is used before it is defined", callee.name))
                .primary(callee.span.clone(), "used here")
                .secondary(def.clone(), "defined here, later")
                .help("statements run in order: move the definition above its first use");
            self.report(d);
            return Value::Error;
        }
        let d = Diagnostic::error("E0101", format!("unknown function, layer or block `{}`", callee.name))
            .primary(callee.span.clone(), "not defined");
        let d = self.suggest(d, scope, &callee.name);
        self.report(d);
        Value::Error
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_layer(
        &mut self,
        b: &mut Build,
        scope: &mut Scope,
        index: usize,
        callee: &ast::Ident,
        args: &[ast::Arg],
        piped: Option<(Value, Span)>,
        span: &Span,
    ) -> Value {
        let mut inputs: Vec<(Value, Span)> = piped.into_iter().collect();
        for a in args {
            if let Some(n) = &a.name {
                self.report(
                    Diagnostic::error("E0203", format!("layer `{}` takes its input positionally", callee.name))
                        .primary(n.span.clone(), "named argument"),
                );
                return Value::Error;
            }
            let v = self.expr(b, scope, &a.value);
            inputs.push((v, a.value.span.clone()));
        }
        if inputs.iter().any(|(v, _)| matches!(v, Value::Error)) {
            return Value::Error;
        }
        let x = match inputs.as_slice() {
            [(Value::Tensor(x), _)] => *x,
            [(other, s)] => {
                self.report(
                    Diagnostic::error(
                        "E0200",
                        format!("layer `{}` expects a tensor, found {}", callee.name, other.kind()),
                    )
                    .primary(s.clone(), "not a tensor"),
                );
                return Value::Error;
            }
            _ => {
                self.report(
                    Diagnostic::error(
                        "E0202",
                        format!("layer `{}` takes one tensor, got {}", callee.name, inputs.len()),
                    )
                    .primary(span.clone(), "wrong number of inputs"),
                );
                return Value::Error;
            }
        };
        let entry = &mut b.layers[index];
        entry.used = true;
        let name = entry.name.clone();
        let mut ctx = Ctx {
            g: &mut b.graph,
            state: &mut b.state,
            origin: Origin::new(name, Some(span.clone())),
            mode: self.mode,
        };
        match b.layers[index].layer.apply(&mut ctx, x, &callee.span) {
            Ok(y) => Value::Tensor(y),
            Err(e) => {
                let decl = b.layers[index].decl_span.clone();
                match e {
                    LibError::Op(op) => {
                        let mut d = Diagnostic::error("E0300", op.message)
                            .primary(callee.span.clone(), format!("`{}` is applied here", callee.name))
                            .secondary(decl, "declared here");
                        if let Some(h) = op.hint.filter(|h| !h.is_empty()) {
                            d = d.help(h);
                        }
                        self.report(d);
                    }
                    LibError::Arg(a) => {
                        let mut d = Diagnostic::error("E0301", a.message).primary(callee.span.clone(), "applied here");
                        if let Some(h) = a.hint {
                            d = d.help(h);
                        }
                        self.report(d);
                    }
                    LibError::Diag(d) => self.report(*d),
                }
                Value::Error
            }
        }
    }

    fn call_block(
        &mut self,
        b: &mut Build,
        scope: &mut Scope,
        block: &'a ast::Block,
        args: &[ast::Arg],
        piped: Option<(Value, Span)>,
        span: &Span,
    ) -> Value {
        let name = block.name.name.clone();
        if b.block_stack.contains(&name) || b.block_stack.len() >= MAX_BLOCK_DEPTH {
            self.report(
                Diagnostic::error("E0400", format!("block `{name}` calls itself"))
                    .primary(span.clone(), "recursive call")
                    .secondary(block.name.span.clone(), "block defined here")
                    .note("blocks are expanded when the model is built, so they cannot recurse"),
            );
            return Value::Error;
        }
        // Evaluate arguments in the caller's scope and bind them to parameters.
        let mut values: Vec<Option<(Value, Span)>> = vec![None; block.params.len()];
        let mut positional = piped.into_iter().collect::<Vec<_>>();
        let mut named = Vec::new();
        for a in args {
            let v = self.expr(b, scope, &a.value);
            match &a.name {
                Some(n) => named.push((n.clone(), v, a.value.span.clone())),
                None => positional.push((v, a.value.span.clone())),
            }
        }
        if positional.len() > block.params.len() {
            let extra = &positional[block.params.len()].1;
            self.report(
                Diagnostic::error(
                    "E0202",
                    format!(
                        "block `{name}` takes {} arguments but {} were given",
                        block.params.len(),
                        positional.len() + named.len()
                    ),
                )
                .primary(extra.clone(), "unexpected argument")
                .secondary(block.name.span.clone(), "block defined here"),
            );
            return Value::Error;
        }
        for (slot, v) in positional.into_iter().enumerate() {
            values[slot] = Some(v);
        }
        for (n, v, s) in named {
            match block.params.iter().position(|p| p.name == n.name) {
                Some(slot) if values[slot].is_none() => values[slot] = Some((v, s)),
                Some(_) => {
                    self.report(
                        Diagnostic::error("E0202", format!("argument `{}` is given twice", n.name))
                            .primary(n.span.clone(), "again here"),
                    );
                    return Value::Error;
                }
                None => {
                    let params: Vec<&str> = block.params.iter().map(|p| p.name.as_str()).collect();
                    let mut d = Diagnostic::error("E0203", format!("block `{name}` has no parameter `{}`", n.name))
                        .primary(n.span.clone(), "unknown parameter");
                    if let Some(s) = did_you_mean(&n.name, params.iter().copied()) {
                        d = d.help(format!("did you mean `{s}`?"));
                    }
                    self.report(d);
                    return Value::Error;
                }
            }
        }
        if let Some(missing) = values.iter().position(Option::is_none) {
            self.report(
                Diagnostic::error(
                    "E0201",
                    format!("missing argument `{}` of block `{name}`", block.params[missing].name),
                )
                .primary(span.clone(), "in this call")
                .secondary(block.params[missing].span.clone(), "parameter declared here"),
            );
            return Value::Error;
        }
        if values.iter().any(|v| matches!(v, Some((Value::Error, _)))) {
            return Value::Error;
        }
        let prefix = self.instance_prefix(scope, &name);
        let mut inner = Scope::new(prefix, &block.body);
        for (p, v) in block.params.iter().zip(values) {
            let (v, _) = v.expect("every parameter is bound");
            self.define(&mut inner, p, v, BindingKind::BlockParam);
        }
        b.block_stack.push(name.clone());
        let layers_before = b.layers.len();
        let result = self.block_body(b, &mut inner, block);
        b.block_stack.pop();
        // Warnings about a block's own names are reported once, at the block.
        for entry in &mut b.layers[layers_before..] {
            if !entry.used {
                entry.used = true;
                let d = Diagnostic::warning("W0001", format!("unused layer `{}` in block `{name}`", entry.name))
                    .primary(entry.decl_span.clone(), "declared here but never applied")
                    .help("apply it in the block's body, or remove it");
                self.diags.push(d);
            }
        }
        result
    }

    fn block_body(&mut self, b: &mut Build, scope: &mut Scope, block: &ast::Block) -> Value {
        let mut result = None;
        for stmt in &block.body {
            match stmt {
                ast::Stmt::Let { name, value, .. } => {
                    let v = self.binding_value(b, scope, name, value);
                    let kind = if matches!(v, Value::Layer(_)) {
                        BindingKind::Layer
                    } else {
                        BindingKind::Value
                    };
                    self.define(scope, name, v, kind);
                }
                ast::Stmt::Return { value, span } => {
                    if result.is_some() {
                        self.report(
                            Diagnostic::error("E0400", "a block returns once").primary(span.clone(), "second `return`"),
                        );
                        continue;
                    }
                    let calls = count_block_calls(value, &self.blocks);
                    scope.instances = (calls > 0).then(|| InstanceNames {
                        base: "out".into(),
                        total: calls,
                        next: 0,
                    });
                    result = Some(self.expr(b, scope, value));
                    scope.instances = None;
                }
                ast::Stmt::Input { span, .. } | ast::Stmt::Output { span, .. } => self.report(
                    Diagnostic::error(
                        "E0400",
                        "blocks take inputs as parameters and give one result with `return`",
                    )
                    .primary(span.clone(), "not allowed in a block"),
                ),
                ast::Stmt::Train(t) => self.report(
                    Diagnostic::error("E0400", "a `train` section belongs to a model, not a block")
                        .primary(t.span.clone(), "not allowed in a block"),
                ),
            }
        }
        result.unwrap_or_else(|| {
            self.report(
                Diagnostic::error("E0400", format!("block `{}` has no `return`", block.name.name))
                    .primary(block.name.span.clone(), "this block returns nothing")
                    .help("end the block with `return EXPR`"),
            );
            Value::Error
        })
    }

    /// Parameter prefix of a block instance: the binding it is assigned to
    /// (`res1` → `res1.a.weight`), numbered when one binding makes several.
    fn instance_prefix(&self, scope: &mut Scope, block: &str) -> String {
        let local = match &mut scope.instances {
            Some(n) if n.total == 1 => n.base.clone(),
            Some(n) => {
                n.next += 1;
                format!("{}.{}", n.base, n.next - 1)
            }
            None => block.to_string(),
        };
        qualified(&scope.prefix, &local)
    }

    /// Binds call arguments (and a piped value, first) to a signature.
    #[allow(clippy::too_many_arguments)]
    fn bind_args(
        &mut self,
        b: &mut Build,
        scope: &mut Scope,
        callee: &str,
        params: &'static [super::value::Param],
        args: &[ast::Arg],
        piped: Option<(Value, Span)>,
        span: &Span,
    ) -> Option<Args> {
        let mut values: Vec<Option<(Value, Span)>> = vec![None; params.len()];
        let mut next = 0;
        if let Some(p) = piped {
            values[0] = Some(p);
            next = 1;
        }
        let mut ok = true;
        for a in args {
            let v = self.expr(b, scope, &a.value);
            if matches!(v, Value::Error) {
                ok = false;
            }
            let slot = match &a.name {
                None => {
                    if next >= params.len() {
                        self.report(
                            Diagnostic::error("E0202", format!("`{callee}` takes at most {} arguments", params.len()))
                                .primary(a.span.clone(), "unexpected argument")
                                .note(signature(callee, params)),
                        );
                        return None;
                    }
                    next += 1;
                    next - 1
                }
                Some(n) => {
                    let wanted = library::PARAM_ALIASES
                        .iter()
                        .find(|(alias, _)| *alias == n.name)
                        .map_or(n.name.as_str(), |(_, p)| p);
                    match params.iter().position(|p| p.name == wanted) {
                        Some(s) => s,
                        None => {
                            let mut d = Diagnostic::error("E0203", format!("`{callee}` has no parameter `{}`", n.name))
                                .primary(n.span.clone(), "unknown parameter");
                            d = match did_you_mean(&n.name, params.iter().map(|p| p.name)) {
                                Some(s) => d.help(format!("did you mean `{s}`?")),
                                None => d.note(signature(callee, params)),
                            };
                            self.report(d);
                            return None;
                        }
                    }
                }
            };
            if values[slot].is_some() {
                self.report(
                    Diagnostic::error(
                        "E0202",
                        format!("argument `{}` of `{callee}` is given twice", params[slot].name),
                    )
                    .primary(a.span.clone(), "given again here"),
                );
                return None;
            }
            values[slot] = Some((v, a.value.span.clone()));
        }
        if !ok {
            return None;
        }
        if let Some(missing) = params
            .iter()
            .zip(&values)
            .position(|(p, v)| v.is_none() && p.default == super::value::Default::Required)
        {
            let p = &params[missing];
            self.report(
                Diagnostic::error(
                    "E0201",
                    format!("missing argument `{}` of `{callee}` ({})", p.name, p.kind.describe()),
                )
                .primary(span.clone(), format!("`{}` is required", p.name))
                .note(signature(callee, params)),
            );
            return None;
        }
        Some(Args {
            params,
            values,
            call_span: span.clone(),
        })
    }

    fn lib_error(&mut self, e: LibError, callee: &str, args: &Args, call_span: &Span) {
        let d = match e {
            LibError::Arg(ArgError { param, message, hint }) => {
                let (span, label) = match param {
                    Some(p) if args.is_given(p) || args.params.first().is_some_and(|f| f.name == p) => {
                        (args.span(p), format!("argument `{p}` of `{callee}`"))
                    }
                    _ => (call_span.clone(), "in this call".to_string()),
                };
                let code = if message.contains("floating-point") {
                    "E0301"
                } else {
                    "E0200"
                };
                let d = Diagnostic::error(code, message).primary(span, label);
                match hint {
                    Some(h) => d.help(h),
                    None => d,
                }
            }
            LibError::Op(op) => {
                let d = Diagnostic::error("E0300", op.message).primary(call_span.clone(), "in this call");
                match op.hint.filter(|h| !h.is_empty()) {
                    Some(h) => d.help(h),
                    None => d,
                }
            }
            LibError::Diag(d) => *d,
        };
        self.report(d);
    }

    fn binary(
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
}

impl Checker<'_> {
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
    fn map(&mut self, b: &mut Build, body: SExpr, operands: &[(NodeId, &Span)], span: &Span, label: &str) -> Value {
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

impl Scope {
    fn new(prefix: String, body: &[ast::Stmt]) -> Scope {
        let mut later = HashMap::new();
        for stmt in body {
            match stmt {
                ast::Stmt::Let { name, .. }
                | ast::Stmt::Input { name, .. }
                | ast::Stmt::Output {
                    name, value: Some(_), ..
                } => {
                    later.entry(name.name.clone()).or_insert_with(|| name.span.clone());
                }
                _ => {}
            }
        }
        Scope {
            bindings: HashMap::new(),
            order: Vec::new(),
            later,
            prefix,
            instances: None,
        }
    }
}

fn binding_span(scope: &Scope, name: &str) -> Span {
    scope.bindings.get(name).map_or(0..0, |b| b.span.clone())
}

fn qualified(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Names in an input's sizes that nothing defines become size symbols.
fn collect_symbols(e: &ast::Expr, scope: &Scope, symbols: &mut HashSet<String>) {
    match &e.kind {
        ExprKind::Name(id) if !scope.bindings.contains_key(&id.name) => {
            symbols.insert(id.name.clone());
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            collect_symbols(lhs, scope, symbols);
            collect_symbols(rhs, scope, symbols);
        }
        ExprKind::Neg(inner) => collect_symbols(inner, scope, symbols),
        _ => {}
    }
}

/// How many block calls an expression makes, to name their instances.
fn count_block_calls(e: &ast::Expr, blocks: &HashMap<&str, &ast::Block>) -> usize {
    let is_block = |id: &ast::Ident| blocks.contains_key(id.name.as_str());
    match &e.kind {
        ExprKind::Call { callee, args } => {
            usize::from(is_block(callee)) + args.iter().map(|a| count_block_calls(&a.value, blocks)).sum::<usize>()
        }
        ExprKind::Pipe { lhs, rhs } => {
            let direct = match &rhs.kind {
                ExprKind::Name(id) => usize::from(is_block(id)),
                _ => 0,
            };
            direct + count_block_calls(lhs, blocks) + count_block_calls(rhs, blocks)
        }
        ExprKind::Binary { lhs, rhs, .. } => count_block_calls(lhs, blocks) + count_block_calls(rhs, blocks),
        ExprKind::Neg(inner) => count_block_calls(inner, blocks),
        ExprKind::List(items) => items.iter().map(|i| count_block_calls(i, blocks)).sum(),
        _ => 0,
    }
}

/// `max_pool2d(x: tensor, kernel: int or [h, w], stride = kernel, ...)`
fn signature(callee: &str, params: &[super::value::Param]) -> String {
    let parts: Vec<String> = params
        .iter()
        .map(|p| match p.default {
            super::value::Default::Required => format!("{}: {}", p.name, kind_word(p.kind)),
            _ => format!(
                "{}: {} = {}",
                p.name,
                kind_word(p.kind),
                p.show_default().trim_start_matches("= ")
            ),
        })
        .collect();
    format!("`{callee}({})`", parts.join(", "))
}

fn kind_word(k: Kind) -> &'static str {
    match k {
        Kind::Tensor => "tensor",
        Kind::Tensors => "[tensor]",
        Kind::Int => "int",
        Kind::Pair => "int | [int, int]",
        Kind::Float => "float",
        Kind::Bool => "bool",
        Kind::Str => "string",
        Kind::Shape => "[int]",
        Kind::Axes => "int | [int]",
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
