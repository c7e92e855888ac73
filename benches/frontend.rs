//! The front end and code generator on a generated 2,000-layer model:
//! parsing, checking (names, shapes, graph building) and generating the
//! kernels of its inference graph.

use criterion::{criterion_group, criterion_main, Criterion};
use netc::check::{check, Mode};
use netc::codegen::{generate, Target};
use netc::diag::SourceFile;
use netc::passes::fusion::Fusion;
use netc::syntax::parse;
use std::collections::HashMap;
use std::hint::black_box;

/// A model of `layers` layers, each declared and then applied on a line of
/// its own, the way a generator writes one.
fn generated_model(layers: usize) -> String {
    let mut src = String::from("model deep {\n    input x: f32[B, 256]\n    h0 = x\n");
    for i in 1..=layers {
        src += &format!("    layer{i} = Linear(256, 256, bias: true)\n");
        src += &format!("    h{i} = h{} |> layer{i} |> relu\n", i - 1);
    }
    src += "    head = Linear(256, 10)\n";
    src += &format!("    output logits = h{layers} |> head\n");
    src += "    train {\n        target y: i64[B]\n        loss: cross_entropy(logits, y)\n";
    src += "        optimizer: Adam(lr: 1e-3)\n        batch: 64\n    }\n}\n";
    src
}

fn frontend(c: &mut Criterion) {
    let file = SourceFile::new("deep.net", generated_model(2_000));
    let ast = parse(&file).expect("the generated model parses");
    let checked = check(&ast, Mode::Eval);
    assert!(!checked.has_errors(), "{}", file.render(&checked.diagnostics, false));
    c.bench_function("parse a 2,000-layer model", |b| b.iter(|| parse(black_box(&file))));
    c.bench_function("check a 2,000-layer model", |b| {
        b.iter(|| check(black_box(&ast), Mode::Eval))
    });
    let graph = checked.models[0]
        .graph
        .specialize(&HashMap::from([("B".to_string(), 64)]))
        .unwrap();
    let outputs: Vec<_> = graph.outputs.iter().map(|(_, id)| *id).collect();
    c.bench_function("generate the kernels of a 2,000-layer model", |b| {
        b.iter(|| {
            let fusion = Fusion::new(black_box(&graph), &outputs);
            generate(&graph, &fusion, Target::Gpu, None).unwrap()
        })
    });
}

criterion_group!(benches, frontend);
criterion_main!(benches);
