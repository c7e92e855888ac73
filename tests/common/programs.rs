//! Every program the test suite compiles: each op case forward and
//! backward, and each example in inference form and as a training step.

use super::{cases, load_model};
use netc::autodiff::gradients;
use netc::check::Mode;
use netc::codegen::{generate, Program, Target};
use netc::diag::SourceFile;
use netc::ir::expr::arg;
use netc::ir::{Graph, NodeId, Origin};
use netc::ops::{Map, Reduce, ReduceKind};
use netc::passes::fusion::Fusion;
use netc::tensor::DType;
use netc::train::optim::Optimizer;
use netc::train::step;
use std::collections::HashMap;

pub const EXAMPLES: [&str; 4] = ["cifar_cnn", "mlp", "mnist_cnn", "resnet"];

pub fn program(name: &str, graph: &Graph, required: &[NodeId], target: Target) -> (String, Program) {
    program_with_source(name, graph, required, target, None)
}

/// Like [`program`], with kernel comments citing lines of `source`.
pub fn program_with_source(
    name: &str,
    graph: &Graph,
    required: &[NodeId],
    target: Target,
    source: Option<&SourceFile>,
) -> (String, Program) {
    let fusion = Fusion::new(graph, required);
    let p = generate(graph, &fusion, target, source).unwrap_or_else(|e| panic!("{name}: {e}"));
    (name.to_string(), p)
}

pub fn example_source(name: &str) -> SourceFile {
    let path = example_path(name);
    SourceFile::new(format!("examples/{name}.net"), std::fs::read_to_string(&path).unwrap())
}

/// The op case's graph extended with the gradient of sum(out) w.r.t. its leaves.
pub fn backward_graph(c: &cases::OpCase) -> (Graph, Vec<NodeId>) {
    let mut g = c.case.graph.clone();
    let axes: Vec<usize> = (0..g.ty(c.out).rank()).collect();
    let loss = if axes.is_empty() {
        g.add(Map::new(arg(0), DType::F32).into(), &[c.out], Origin::named("loss"))
            .unwrap()
    } else {
        g.add(
            Reduce::new(ReduceKind::Sum, axes, false).into(),
            &[c.out],
            Origin::named("loss"),
        )
        .unwrap()
    };
    let grads = gradients(&mut g, loss, &c.case.diff).unwrap();
    let mut required: Vec<NodeId> = grads.values().copied().collect();
    required.sort();
    (g, required)
}

pub fn example_path(name: &str) -> std::path::PathBuf {
    super::root().join(format!("examples/{name}.net"))
}

/// An example specialised to batch `b`, for inference.
pub fn example_inference(name: &str, b: i64) -> (Graph, Vec<NodeId>) {
    let model = load_model(&example_path(name), Mode::Eval);
    let g = model.graph.specialize(&HashMap::from([("B".to_string(), b)])).unwrap();
    let required = g.outputs.iter().map(|(_, id)| *id).collect();
    (g, required)
}

/// An example's training step (Adam), specialised to batch `b`; examples
/// without a train section get a cross-entropy loss on their first output.
pub fn example_training_step(name: &str, b: i64) -> (Graph, Vec<NodeId>) {
    let model = load_model(&example_path(name), Mode::Train);
    let opt = Optimizer::Adam {
        lr: 1e-3,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let model = with_default_loss(model);
    let s = step::build(&model, Some(&opt), Some(1.0)).unwrap();
    let g = s.graph.specialize(&HashMap::from([("B".to_string(), b)])).unwrap();
    let required = s.required();
    (g, required)
}

/// Gives a model without a `loss:` the mean squared logits as its loss, so
/// every example has a backward graph to compile.
fn with_default_loss(mut model: netc::check::Model) -> netc::check::Model {
    if model.loss.is_none() {
        let out = model.graph.outputs[0].1;
        let g = &mut model.graph;
        let sq = g
            .add(
                Map::new(arg(0) * arg(0), DType::F32).into(),
                &[out],
                Origin::named("loss"),
            )
            .unwrap();
        let axes: Vec<usize> = (0..g.ty(sq).rank()).collect();
        model.loss = Some(
            g.add(
                Reduce::new(ReduceKind::Mean, axes, false).into(),
                &[sq],
                Origin::named("loss"),
            )
            .unwrap(),
        );
    }
    model
}

/// Every program, for one schedule.
pub fn all(target: Target) -> Vec<(String, Program)> {
    let mut out = Vec::new();
    for c in cases::all(1) {
        out.push(program(&format!("{} forward", c.name), &c.case.graph, &[c.out], target));
        let (g, req) = backward_graph(&c);
        out.push(program(&format!("{} backward", c.name), &g, &req, target));
    }
    for name in EXAMPLES {
        let (g, req) = example_inference(name, 8);
        out.push(program(&format!("{name} inference"), &g, &req, target));
        let (g, req) = example_training_step(name, 8);
        out.push(program(&format!("{name} training step"), &g, &req, target));
    }
    out
}
