//! Calls: layer declarations, applying functions, layers and blocks,
//! binding arguments to signatures, and reporting library errors.

use super::eval::{BindingKind, Build, Checker, LayerEntry, Scope};
use super::library::{self, Ctx, LibError};
use super::value::{ArgError, Args, Kind, Value};
use crate::diag::{did_you_mean, Diagnostic, Span};
use crate::ir::Origin;
use crate::syntax::ast;

/// Blocks may call blocks; deeper than this is surely runaway recursion.
const MAX_BLOCK_DEPTH: usize = 64;

impl<'a> Checker<'a> {
    pub(super) fn declare_layer(
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn call(
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
        let missing = Diagnostic::error("E0101", format!("unknown function, layer or block `{}`", callee.name))
            .primary(callee.span.clone(), "not defined");
        self.undefined(scope, callee, missing)
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
