//! Parsing a generated 2,000-layer model.

use criterion::{criterion_group, criterion_main, Criterion};
use netc::diag::SourceFile;
use netc::syntax::parse;
use std::hint::black_box;

/// A model of `layers` layers, each declared and then applied on a line of
/// its own, the way a generator writes one.
fn generated_model(layers: usize) -> String {
    let mut src = String::from("model deep {\n    input x: f32[B, 256]\n    h0 = x\n");
    for i in 1..=layers {
        src += &format!("    layer{i} = Linear(256, 256, bias: true)\n");
        src += &format!("    h{i} = h{} |> layer{i} |> relu\n", i - 1);
    }
    src += &format!("    output logits = h{layers} |> Linear(256, 10)\n");
    src += "    train {\n        target y: i64[B]\n        loss: cross_entropy(logits, y)\n";
    src += "        optimizer: Adam(lr: 1e-3)\n        batch: 64\n    }\n}\n";
    src
}

fn parse_generated(c: &mut Criterion) {
    let file = SourceFile::new("deep.net", generated_model(2_000));
    assert!(parse(&file).is_ok(), "the generated model parses");
    c.bench_function("parse a 2,000-layer model", |b| b.iter(|| parse(black_box(&file))));
}

criterion_group!(benches, parse_generated);
criterion_main!(benches);
