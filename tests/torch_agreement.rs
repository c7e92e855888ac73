//! Models exported from PyTorch evaluate to PyTorch's outputs: weights and
//! inputs from tests/data/torch, run on the cpu device with both schedules,
//! compared with PyTorch's float64 outputs to 1e-5 relative error.

mod common;

use common::device::{relative_error, test_cache};
use common::{load_model, torch};
use netc::check::Mode;
use netc::exec::bind::{check_weights, infer_sizes, param_nodes};
use netc::exec::{Executable, Options};

fn agree(model: &str) {
    let meta = torch::json(model);
    let net = common::root().join(meta["net"].as_str().unwrap());
    let checked = load_model(&net, Mode::Eval);
    let weights = torch::weights(&meta);
    check_weights(&checked.graph, &weights, false).unwrap_or_else(|p| panic!("{model}: {}", p.join("; ")));
    let inputs = torch::files(&meta, "inputs");
    let expected = torch::files(&meta, "outputs");
    let bound: Vec<_> = inputs
        .iter()
        .map(|(n, t)| (checked.graph.input_named(n).expect("input"), t))
        .collect();
    let sizes = infer_sizes(&checked.graph, &bound).unwrap_or_else(|e| panic!("{model}: {e}"));
    let graph = checked.graph.specialize(&sizes).unwrap();
    let required: Vec<_> = expected
        .iter()
        .map(|(n, _)| graph.output_named(n).expect("output"))
        .collect();
    let device = common::test_device();
    for &target in common::device::schedules(&device) {
        let options = Options {
            cache: Some(test_cache()),
            target: Some(target),
            source: None,
        };
        let mut exe =
            Executable::new(graph.clone(), &required, &device, &options).unwrap_or_else(|e| panic!("{model}: {e}"));
        for (name, id) in param_nodes(&graph) {
            if exe.plan.slot_of.contains_key(&id) {
                exe.write(id, &weights[&name]).unwrap();
            }
        }
        for (name, t) in &inputs {
            exe.write(graph.input_named(name).unwrap(), t).unwrap();
        }
        exe.run().unwrap();
        for ((name, want), &id) in expected.iter().zip(&required) {
            let got = exe.read(id).unwrap();
            assert_eq!(got.shape, want.shape, "{model}.{name}: shape");
            let err = relative_error(&got.to_f64_vec(), &want.to_f64_vec());
            assert!(
                err <= 1e-5,
                "{model}.{name} ({} schedule): relative error {err:e} against PyTorch",
                target.name()
            );
        }
    }
}

#[test]
fn conv_variants() {
    agree("conv_variants");
}

#[test]
fn pooling() {
    agree("pooling");
}

#[test]
fn pooling_ceil_mode() {
    agree("pooling_ceil");
}

#[test]
fn batchnorm_inference() {
    agree("batchnorm");
}

#[test]
fn activations_and_softmax() {
    agree("activations");
}

#[test]
fn seed_cnn() {
    agree("cifar_cnn");
}

#[test]
fn mlp() {
    agree("mlp");
}

#[test]
fn resnet() {
    agree("resnet");
}

#[test]
fn mnist_cnn() {
    agree("mnist_cnn");
}
