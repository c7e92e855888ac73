//! Gradient checks: autodiff's backward graph, evaluated by the reference
//! evaluator in f64, against central finite differences of the forward graph.

use super::Case;
use netc::autodiff::gradients;
use netc::ir::expr::arg;
use netc::ir::NodeId;
use netc::ops::{Map, Reduce, ReduceKind};
use netc::reference::evaluate;
use netc::tensor::DType;

/// Checks d(sum(out * R))/d leaf for every differentiable leaf of the case,
/// on up to `samples` elements per leaf.
pub fn check(mut case: Case, out: NodeId, samples: usize) {
    let shape = case.graph.ty(out).dims().expect("concrete test shapes");
    let weights = case.leaf_with(&shape, |r| r.range(-1.0, 1.0));
    let prod = case.add(Map::new(arg(0) * arg(1), DType::F32), &[out, weights]);
    let axes: Vec<usize> = (0..shape.len()).collect();
    let loss = if axes.is_empty() {
        prod
    } else {
        case.add(Reduce::new(ReduceKind::Sum, axes, false), &[prod])
    };
    let diff = case.diff.clone();
    let mut graph = case.graph.clone();
    let grads = gradients(&mut graph, loss, &diff).unwrap_or_else(|e| panic!("autodiff failed: {e}"));
    graph.outputs.push(("loss".into(), loss));
    let values = evaluate::<f64>(&graph, &case.values).expect("evaluation");
    let loss_at = |vals: &std::collections::HashMap<String, netc::reference::RefTensor<f64>>| {
        evaluate::<f64>(&case.graph, vals).expect("evaluation")[loss.index()].data[0]
    };
    for &leaf in &diff {
        let name = case.graph.node(leaf).origin.name.clone();
        let analytic = grads.get(&leaf).map(|g| values[g.index()].data.clone());
        let n = case.values[&name].data.len();
        let picks: Vec<usize> = if n <= samples {
            (0..n).collect()
        } else {
            (0..samples).map(|_| case.rng.int(0, n - 1)).collect()
        };
        for i in picks {
            let h = 1e-6;
            let mut vals = case.values.clone();
            vals.get_mut(&name).unwrap().data[i] += h;
            let up = loss_at(&vals);
            vals.get_mut(&name).unwrap().data[i] -= 2.0 * h;
            let down = loss_at(&vals);
            let numeric = (up - down) / (2.0 * h);
            let got = analytic.as_ref().map_or(0.0, |a| a[i]);
            let tol = 1e-5 * (1.0 + numeric.abs());
            assert!(
                (numeric - got).abs() <= tol,
                "gradient of {name}[{i}]: finite differences {numeric}, autodiff {got}\n{}",
                netc::ir::print::to_text(&graph, None)
            );
        }
    }
}
