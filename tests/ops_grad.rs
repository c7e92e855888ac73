//! Every primitive's backward rule against finite differences, in f64, on
//! random shapes and values.

mod common;

use common::{gradcheck::check, Case};
use netc::ir::expr::{arg, lit, SExpr};
use netc::ir::Dim;
use netc::ops::*;
use netc::tensor::DType;

const SEEDS: [u64; 3] = [1, 2, 3];

fn map(expr: SExpr) -> Map {
    Map::new(expr, DType::F32)
}

#[test]
fn elementwise_with_broadcasting() {
    for seed in SEEDS {
        let mut c = Case::new(seed);
        let (n, m) = (c.rng.int(1, 4), c.rng.int(1, 5));
        let a = c.leaf(&[n, m]);
        let b = c.leaf(&[m]);
        let gelu = lit(0.5) * arg(0) * (lit(1.0) + (arg(0) * lit(std::f64::consts::FRAC_1_SQRT_2)).erf());
        let body = gelu + arg(1).sigmoid() * arg(0).tanh() - (arg(0) * arg(1)).max(lit(0.1)) / (arg(1) * arg(1) + lit(1.0));
        let y = c.add(map(body), &[a, b]);
        check(c, y, 20);
    }
}

#[test]
fn dropout_style_masks_are_recomputed_in_backward() {
    let mut c = Case::new(9);
    let x = c.leaf(&[3, 7]);
    let seed = c.leaf_with(&[], |_| 1234.0);
    let keep = SExpr::Uniform { seed: 1, salt: 5 }.ge(lit(0.3));
    let y = c.add(map(arg(0) * keep / lit(0.7)), &[x, seed]);
    check(c, y, 21);
}

#[test]
fn reductions() {
    for seed in SEEDS {
        for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max] {
            let mut c = Case::new(seed);
            let shape = [c.rng.int(1, 3), c.rng.int(2, 4), c.rng.int(1, 5)];
            let x = c.leaf(&shape);
            let keep = seed % 2 == 0;
            let y = c.add(Reduce::new(kind, vec![0, 2], keep), &[x]);
            check(c, y, 30);
        }
    }
}

#[test]
fn movement() {
    for seed in SEEDS {
        let mut c = Case::new(seed);
        let (a, b, d) = (c.rng.int(1, 3), c.rng.int(2, 4), c.rng.int(1, 3));
        let x = c.leaf(&[a, b, d]);
        let p = c.add(Permute { perm: vec![2, 0, 1] }, &[x]);
        let r = c.add(Reshape { shape: vec![Dim::from(d * a), Dim::from(b)] }, &[p]);
        let s = c.add(Slice { axis: 1, start: Dim::lit(1), len: Dim::from(b - 1) }, &[r]);
        let padded = c.add(Pad { axis: 0, before: Dim::lit(1), after: Dim::lit(2) }, &[s]);
        let other = c.leaf(&[d * a + 3, 2]);
        let cat = c.add(Concat { axis: 1 }, &[padded, other]);
        let e = c.add(Expand { shape: vec![Dim::lit(2), Dim::from(d * a + 3), Dim::from(b + 1)] }, &[cat]);
        check(c, e, 25);
    }
}

#[test]
fn matmul_in_every_layout() {
    for seed in SEEDS {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut c = Case::new(seed);
            let (m, k, n) = (c.rng.int(1, 4), c.rng.int(1, 5), c.rng.int(1, 4));
            let a_shape = if ta { [2, k, m] } else { [2, m, k] };
            let b_shape = if tb { vec![n, k] } else { vec![k, n] };
            let a = c.leaf(&a_shape);
            let b = c.leaf(&b_shape);
            let y = c.add(MatMul::new(ta, tb), &[a, b]);
            check(c, y, 15);
        }
    }
}

#[test]
fn conv2d_with_stride_padding_dilation_groups() {
    let geometries = [
        ConvGeometry { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 },
        ConvGeometry { stride: [2, 1], padding: [0, 2], dilation: [1, 1], groups: 1 },
        ConvGeometry { stride: [1, 2], padding: [2, 1], dilation: [2, 1], groups: 2 },
        ConvGeometry { stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 4 },
    ];
    for (i, geometry) in geometries.into_iter().enumerate() {
        let mut c = Case::new(i as u64);
        let g = geometry.groups;
        let (cin, cout) = (g * c.rng.int(1, 2), g * c.rng.int(1, 2));
        let (h, w) = (c.rng.int(5, 7), c.rng.int(4, 7));
        let x = c.leaf(&[2, cin, h, w]);
        let wt = c.leaf(&[cout, cin / g, 3, 2]);
        let y = c.add(Conv2d { geometry }, &[x, wt]);
        check(c, y, 25);
    }
}

#[test]
fn pooling() {
    let pools = [
        (PoolKind::Max, [2, 2], [2, 2], [0, 0], [1, 1], false, true),
        (PoolKind::Max, [3, 3], [2, 1], [1, 1], [1, 2], true, true),
        (PoolKind::Avg, [3, 2], [2, 2], [1, 1], [1, 1], true, true),
        (PoolKind::Avg, [3, 3], [1, 2], [1, 0], [1, 1], false, false),
    ];
    for (i, (kind, kernel, stride, padding, dilation, ceil_mode, count_include_pad)) in pools.into_iter().enumerate() {
        let mut c = Case::new(10 + i as u64);
        let (h, w) = (c.rng.int(5, 8), c.rng.int(5, 8));
        let x = c.leaf(&[2, 3, h, w]);
        let pool = Pool2d { kind, kernel, stride, padding, dilation, ceil_mode, count_include_pad };
        let y = c.add(pool, &[x]);
        check(c, y, 40);
    }
}
