//! One catalogue of small graphs, one or more per primitive op, on random
//! shapes: gradient checks, device-vs-reference tests, NVRTC compile tests
//! and kernel snapshots all draw from it.

use super::Case;
use netc::ir::expr::{arg, lit, SExpr};
use netc::ir::{Dim, NodeId};
use netc::ops::*;
use netc::tensor::DType;

pub struct OpCase {
    pub name: String,
    pub case: Case,
    pub out: NodeId,
}

fn map(expr: SExpr) -> Map {
    Map::new(expr, DType::F32)
}

fn case(name: &str, seed: u64, build: impl FnOnce(&mut Case) -> NodeId) -> OpCase {
    let mut case = Case::new(seed);
    let out = build(&mut case);
    case.graph.outputs.push(("out".into(), out));
    OpCase {
        name: name.to_string(),
        case,
        out,
    }
}

/// Every case for one seed; shapes vary with the seed.
pub fn all(seed: u64) -> Vec<OpCase> {
    let mut cases = vec![
        case("map_broadcast", seed, |c| {
            let n = c.rng.int(1, 4);
            let m = c.rng.int(1, 5);
            let a = c.leaf(&[n, m]);
            let b = c.leaf(&[m]);
            let gelu = lit(0.5) * arg(0) * (lit(1.0) + (arg(0) * lit(std::f64::consts::FRAC_1_SQRT_2)).erf());
            let body = gelu + arg(1).sigmoid() * arg(0).tanh()
                - (arg(0) * arg(1)).max(lit(0.1)) / (arg(1) * arg(1) + lit(1.0));
            c.add(map(body), &[a, b])
        }),
        case("map_dropout_mask", seed, |c| {
            let x = c.leaf(&[3, 7]);
            let s = c.leaf_with(&[], |_| 1234.0);
            let keep = SExpr::Uniform { seed: 1, salt: 5 }.ge(lit(0.3));
            c.add(map(arg(0) * keep / lit(0.7)), &[x, s])
        }),
        case("movement_chain", seed, |c| {
            let a = c.rng.int(1, 3);
            let b = c.rng.int(2, 4);
            let d = c.rng.int(1, 3);
            let x = c.leaf(&[a, b, d]);
            let p = c.add(Permute { perm: vec![2, 0, 1] }, &[x]);
            let r = c.add(
                Reshape {
                    shape: vec![Dim::from(d * a), Dim::from(b)],
                },
                &[p],
            );
            let s = c.add(
                Slice {
                    axis: 1,
                    start: Dim::lit(1),
                    len: Dim::from(b - 1),
                },
                &[r],
            );
            let padded = c.add(
                Pad {
                    axis: 0,
                    before: Dim::lit(1),
                    after: Dim::lit(2),
                },
                &[s],
            );
            let other = c.leaf(&[d * a + 3, 2]);
            let cat = c.add(Concat { axis: 1 }, &[padded, other]);
            c.add(
                Expand {
                    shape: vec![Dim::lit(2), Dim::from(d * a + 3), Dim::from(b + 1)],
                },
                &[cat],
            )
        }),
    ];
    for (i, kind) in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max]
        .into_iter()
        .enumerate()
    {
        cases.push(case(
            &format!("reduce_{kind:?}").to_lowercase(),
            seed * 10 + i as u64,
            |c| {
                let shape = [c.rng.int(1, 3), c.rng.int(2, 4), c.rng.int(1, 5)];
                let x = c.leaf(&shape);
                c.add(Reduce::new(kind, vec![0, 2], seed % 2 == 0), &[x])
            },
        ));
    }
    cases.push(case("reduce_long_rows", seed, |c| {
        let n = 300 + c.rng.int(0, 50);
        let x = c.leaf(&[3, n]);
        let y = c.add(Reduce::new(ReduceKind::Sum, vec![1], true), &[x]);
        c.add(map((arg(0) * lit(0.5)).tanh()), &[y])
    }));
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        cases.push(case(
            &format!("matmul_{}{}", if ta { "t" } else { "n" }, if tb { "t" } else { "n" }),
            seed,
            |c| {
                let m = c.rng.int(1, 4);
                let k = c.rng.int(1, 5);
                let n = c.rng.int(1, 4);
                let a = c.leaf(&if ta { [2, k, m] } else { [2, m, k] });
                let b = c.leaf(&if tb { [n, k] } else { [k, n] });
                c.add(MatMul::new(ta, tb), &[a, b])
            },
        ));
    }
    cases.push(case("matmul_bias_relu_epilogue", seed, |c| {
        let m = c.rng.int(60, 70);
        let k = c.rng.int(10, 40);
        let n = c.rng.int(60, 70);
        let a = c.leaf(&[m, k]);
        let w = c.leaf(&[n, k]);
        let bias = c.leaf(&[n]);
        let y = c.add(MatMul::new(false, true), &[a, w]);
        let y = c.add(map(arg(0) + arg(1)), &[y, bias]);
        c.add(map(arg(0).max(lit(0.0))), &[y])
    }));
    let geometries = [
        ConvGeometry {
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
        },
        ConvGeometry {
            stride: [2, 1],
            padding: [0, 2],
            dilation: [1, 1],
            groups: 1,
        },
        ConvGeometry {
            stride: [1, 2],
            padding: [2, 1],
            dilation: [2, 1],
            groups: 2,
        },
        ConvGeometry {
            stride: [2, 2],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 4,
        },
    ];
    for (i, geometry) in geometries.into_iter().enumerate() {
        cases.push(case(&format!("conv2d_{i}"), seed * 100 + i as u64, |c| {
            let g = geometry.groups;
            let cin = g * c.rng.int(1, 2);
            let cout = g * c.rng.int(1, 2);
            let h = c.rng.int(5, 7);
            let w = c.rng.int(4, 7);
            let x = c.leaf(&[2, cin, h, w]);
            let wt = c.leaf(&[cout, cin / g, 3, 2]);
            c.add(Conv2d { geometry }, &[x, wt])
        }));
    }
    let pools = [
        (PoolKind::Max, [2, 2], [2, 2], [0, 0], [1, 1], false, true),
        (PoolKind::Max, [3, 3], [2, 1], [1, 1], [1, 2], true, true),
        (PoolKind::Avg, [3, 2], [2, 2], [1, 1], [1, 1], true, true),
        (PoolKind::Avg, [3, 3], [1, 2], [1, 0], [1, 1], false, false),
    ];
    for (i, (kind, kernel, stride, padding, dilation, ceil_mode, count_include_pad)) in pools.into_iter().enumerate() {
        cases.push(case(&format!("pool_{i}"), seed * 1000 + i as u64, |c| {
            let h = c.rng.int(5, 8);
            let w = c.rng.int(5, 8);
            let x = c.leaf(&[2, 3, h, w]);
            c.add(
                Pool2d {
                    kind,
                    kernel,
                    stride,
                    padding,
                    dilation,
                    ceil_mode,
                    count_include_pad,
                },
                &[x],
            )
        }));
    }
    cases
}
