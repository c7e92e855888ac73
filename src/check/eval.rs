//! The checker proper: walks a model's statements in order, keeping a scope
//! of names, and builds the graph as it goes. Calls and arithmetic, the
//! rest of its methods, are in `calls.rs` and `arith.rs`.

use super::library::{self, Layer, ModelState};
use super::value::Value;
use super::{Checked, Mode, Model};
use crate::diag::{did_you_mean, Diagnostic, Span};
use crate::ir::expr::arg;
use crate::ir::{Dim, Graph, NodeId, Origin, TensorType};
use crate::ops::Input;
use crate::syntax::ast::{self, ExprKind};
use crate::tensor::DType;
use std::collections::{HashMap, HashSet};

pub struct Checker<'a> {
    ast: &'a ast::File,
    pub(super) mode: Mode,
    pub(super) blocks: HashMap<&'a str, &'a ast::Block>,
    pub(super) diags: Vec<Diagnostic>,
    errors: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BindingKind {
    Input,
    Layer,
    Value,
    BlockParam,
}

pub(super) struct Binding {
    pub(super) value: Value,
    pub(super) span: Span,
    pub(super) used: bool,
    kind: BindingKind,
}

/// Names visible in a model body or a block instance.
pub(super) struct Scope {
    pub(super) bindings: HashMap<String, Binding>,
    order: Vec<String>,
    /// Names bound further down in this body, for "used before defined".
    later: HashMap<String, Span>,
    /// Prefix of parameter names (`res1` inside an instance of a block).
    pub(super) prefix: String,
    /// Names for block instances created by the binding being evaluated.
    pub(super) instances: Option<InstanceNames>,
}

pub(super) struct InstanceNames {
    pub(super) base: String,
    pub(super) total: usize,
    pub(super) next: usize,
}

pub(super) struct LayerEntry {
    pub(super) name: String,
    pub(super) layer: Box<dyn Layer>,
    pub(super) used: bool,
    pub(super) decl_span: Span,
}

/// Everything one model's build accumulates.
pub(super) struct Build {
    pub(super) graph: Graph,
    pub(super) state: ModelState,
    pub(super) layers: Vec<LayerEntry>,
    symbols: HashSet<String>,
    pub(super) block_stack: Vec<String>,
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

    pub(super) fn report(&mut self, d: Diagnostic) {
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

    pub(super) fn define(&mut self, scope: &mut Scope, name: &ast::Ident, value: Value, kind: BindingKind) {
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

    pub(super) fn expr(&mut self, b: &mut Build, scope: &mut Scope, e: &ast::Expr) -> Value {
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
        let missing = Diagnostic::error("E0100", format!("cannot find `{}` in this scope", id.name))
            .primary(id.span.clone(), "not found");
        self.undefined(scope, id, missing)
    }

    /// Reports a name that nothing binds: as used before its definition when
    /// this body binds it further down, else as `missing` with a suggestion.
    pub(super) fn undefined(&mut self, scope: &Scope, id: &ast::Ident, missing: Diagnostic) -> Value {
        let d = match scope.later.get(&id.name) {
            Some(def) => Diagnostic::error("E0102", format!("`{}` is used before it is defined", id.name))
                .primary(id.span.clone(), "used here")
                .secondary(def.clone(), "defined here, later")
                .help("statements run in order: move the definition above its first use"),
            None => self.suggest(missing, scope, &id.name),
        };
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

    pub(super) fn block_body(&mut self, b: &mut Build, scope: &mut Scope, block: &ast::Block) -> Value {
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
}

impl Scope {
    pub(super) fn new(prefix: String, body: &[ast::Stmt]) -> Scope {
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
