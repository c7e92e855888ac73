//! Every example model, in inference and in training form, on random batch
//! sizes with fresh random parameters and inputs: the cpu device (both
//! schedules) against the reference evaluator.

mod common;

use common::device::check_against_reference;
use common::load_model;
use netc::check::Mode;
use netc::exec::bind::initial_params;
use netc::ops::Op;
use netc::reference::RefTensor;
use netc::rng::Rng;
use netc::tensor::DType;
use std::collections::HashMap;

const EXAMPLES: [&str; 4] = ["cifar_cnn", "mlp", "mnist_cnn", "resnet"];

fn check_example(name: &str, mode: Mode, seed: u64) {
    let path = common::root().join(format!("examples/{name}.net"));
    let model = load_model(&path, mode);
    let mut rng = Rng::new(seed);
    let batch = rng.int(1, 4) as i64;
    let graph = model
        .graph
        .specialize(&HashMap::from([("B".to_string(), batch)]))
        .unwrap();
    let mut values: HashMap<String, RefTensor<f64>> = initial_params(&graph, seed)
        .iter()
        .map(|(k, t)| (k.clone(), RefTensor::from_tensor(t)))
        .collect();
    for &id in &graph.inputs {
        let Op::Input(input) = graph.op(id) else {
            continue;
        };
        let dims = graph.ty(id).dims().unwrap();
        let n: usize = dims.iter().product();
        let data = match input.ty.dtype {
            DType::I64 => (0..n).map(|_| rng.int(0, 9) as f64).collect(),
            _ => (0..n).map(|_| rng.normal()).collect(),
        };
        values.insert(input.name.clone(), RefTensor { shape: dims, data });
    }
    // Training graphs also compute their loss.
    let mut graph = graph;
    if let Some(loss) = model.loss {
        graph.outputs.push(("loss".into(), loss));
    }
    check_against_reference(&format!("{name} ({mode:?}, B = {batch})"), &graph, &values, 1e-5);
}

#[test]
fn examples_in_inference_form() {
    for name in EXAMPLES {
        check_example(name, Mode::Eval, 7);
    }
}

#[test]
fn examples_in_training_form() {
    for name in EXAMPLES {
        check_example(name, Mode::Train, 11);
    }
}
