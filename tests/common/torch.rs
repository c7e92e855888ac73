//! The PyTorch reference files in tests/data/torch (made by
//! scripts/make_torch_refs.py): weights, inputs and expected outputs.

use netc::rng::Rng;
use netc::tensor::Tensor;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub fn dir() -> PathBuf {
    super::root().join("tests/data/torch")
}

pub fn json(name: &str) -> Value {
    let text =
        std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap_or_else(|e| panic!("{name}.json: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}.json: {e}"))
}

pub fn npy(file: &str) -> Tensor {
    netc::io::read_npy(dir().join(file)).unwrap_or_else(|e| panic!("{e}"))
}

/// The weights file of a reference, with the tensors too large to commit
/// regenerated from their recorded seeds (U(lo, hi) from netc's own Rng).
pub fn weights(meta: &Value) -> BTreeMap<String, Tensor> {
    let file = meta["weights"]
        .as_str()
        .or_else(|| meta["files"]["weights"].as_str())
        .expect("weights file");
    let mut w = netc::io::read_safetensors(dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
    for p in meta["params"].as_array().expect("params") {
        if p["stored"].as_bool() == Some(false) {
            let init = &p["init"];
            assert_eq!(init["kind"], "uniform", "only uniform tensors are regenerated");
            let (lo, hi) = (init["lo"].as_f64().unwrap(), init["hi"].as_f64().unwrap());
            let shape: Vec<usize> = p["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let mut rng = Rng::new(init["seed"].as_u64().unwrap());
            let n = shape.iter().product();
            let data = (0..n).map(|_| rng.range(lo, hi) as f32).collect();
            w.insert(p["name"].as_str().unwrap().to_string(), Tensor::f32(shape, data));
        }
    }
    w
}

/// (name, tensor) of each entry of a list of files in the reference's json.
pub fn files(meta: &Value, key: &str) -> Vec<(String, Tensor)> {
    meta[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}`"))
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                npy(e["file"].as_str().unwrap()),
            )
        })
        .collect()
}
