//! The `netc` command line end to end: every command on the examples, the
//! exit codes and messages of mistakes, and training runs that must be
//! reproducible (same seed, same losses) and resumable (same losses after a
//! restart from a checkpoint).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn netc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(args)
        .current_dir(root())
        .env(
            "NETC_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("netc-cache"),
        )
        .env("NO_COLOR", "1")
        .output()
        .expect("netc runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let out = netc(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "netc {} failed:\n{stderr}", args.join(" "));
    (stdout, stderr)
}

fn fails(args: &[&str]) -> String {
    let out = netc(args);
    assert_eq!(out.status.code(), Some(1), "netc {} should exit with 1", args.join(" "));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const RUNNABLE: [&str; 4] = ["cifar_cnn", "mlp", "mnist_cnn", "resnet"];

fn example(name: &str) -> String {
    format!("examples/{name}.net")
}

#[test]
fn check_and_graph_every_example() {
    for name in RUNNABLE {
        let (out, _) = ok(&["check", &example(name), "--params"]);
        assert!(
            out.contains("is well formed") && out.contains("trainable parameters"),
            "{out}"
        );
        let (dot, _) = ok(&["graph", &example(name), "--format", "dot"]);
        assert!(dot.starts_with("digraph") && dot.contains("->"), "{name}");
        let (text, _) = ok(&["graph", &example(name), "--format", "text", "--train"]);
        assert!(text.contains("output"), "{name}");
    }
    let err = fails(&["check", "examples/cifar_cnn_broken.net"]);
    assert!(
        err.contains("`fc1` expects 2048 input features but receives 8192"),
        "{err}"
    );
    assert!(err.contains("examples/cifar_cnn_broken.net:10:68"), "{err}");
}

#[test]
fn mistakes_exit_with_one_and_say_what_is_wrong() {
    assert!(fails(&["check", "no/such/file.net"]).contains("cannot read `no/such/file.net`"));
    assert!(fails(&["check", "--no-such-flag", "x.net"]).contains("--no-such-flag"));
    assert!(fails(&["graph", &example("mlp"), "--format", "svg"]).contains("svg"));
    let dir = tmp("mistakes");
    let bad = dir.join("bad.npy");
    std::fs::write(&bad, b"not an npy file").unwrap();
    let err = fails(&[
        "eval",
        &example("mlp"),
        "--input",
        &format!("x={}", bad.display()),
        "--output",
        dir.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(err.contains("bad.npy"), "{err}");
    // mlp's input is [B, 20]: a wrong fixed axis names the file, the axis and the expected shape.
    let narrow = dir.join("narrow.npy");
    netc::io::write_npy(&narrow, &netc::tensor::Tensor::f32(vec![2, 19], vec![0.0; 38])).unwrap();
    let err = fails(&[
        "eval",
        &example("mlp"),
        "--input",
        &format!("x={}", narrow.display()),
        "--output",
        dir.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(
        err.contains("narrow.npy") && err.contains("axis 1 is 19, expected 20") && err.contains("[B, 20]"),
        "{err}"
    );
    let err = fails(&[
        "eval",
        &example("mlp"),
        "--input",
        "y=x.npy",
        "--output",
        dir.to_str().unwrap(),
    ]);
    assert!(err.contains("no such input") && err.contains("expected `x`"), "{err}");
    let weights = root().join("tests/data/torch/batchnorm.safetensors");
    let err = fails(&[
        "eval",
        &example("mlp"),
        "--weights",
        weights.to_str().unwrap(),
        "--input",
        "x=tests/data/torch/mlp.input.x.npy",
        "--output",
        dir.to_str().unwrap(),
    ]);
    assert!(
        err.contains("missing `fc1.weight`") && err.contains("unexpected `bn.weight`"),
        "{err}"
    );
}

#[test]
fn compile_every_example_to_cuda_and_ptx() {
    let dir = tmp("compile");
    for name in RUNNABLE {
        let (out, _) = ok(&[
            "compile",
            &example(name),
            "--emit",
            "cuda",
            "-o",
            dir.to_str().unwrap(),
            "--dim",
            "B=4",
        ]);
        assert!(out.contains("kernels"), "{out}");
        let cu = std::fs::read_to_string(dir.join(format!("{name}.cu"))).unwrap();
        assert!(cu.contains("#include \"netc.cuh\"") && cu.contains("__global__"));
        assert!(dir.join("netc.cuh").exists());
        if netc_nvrtc_available() {
            ok(&["compile", &example(name), "--emit", "ptx", "-o", dir.to_str().unwrap()]);
            let ptx = std::fs::read_to_string(dir.join(format!("{name}.ptx"))).unwrap();
            assert!(ptx.contains(".version") && ptx.contains(".entry"), "{name}: not PTX");
        }
    }
    let err = fails(&["compile", &example("mlp"), "-o", dir.to_str().unwrap(), "--dim", "Q=3"]);
    assert!(err.contains("no size `Q`"), "{err}");
}

fn netc_nvrtc_available() -> bool {
    match netc::device::nvrtc::Nvrtc::load() {
        Ok(_) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("NVRTC missing under CI: {e}"),
        Err(_) => false,
    }
}

#[test]
fn eval_every_example_on_the_cpu_device() {
    let dir = tmp("eval");
    for name in RUNNABLE {
        let meta = root().join(format!("tests/data/torch/{name}.json"));
        let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(meta).unwrap()).unwrap();
        let input = &meta["inputs"][0];
        let arg = format!(
            "{}=tests/data/torch/{}",
            input["name"].as_str().unwrap(),
            input["file"].as_str().unwrap()
        );
        let weights = format!("tests/data/torch/{}", meta["weights"].as_str().unwrap());
        let out = dir.join(name);
        // Weights too large to commit are regenerated by the tests, not here:
        // evaluate those examples with netc's own initialisation instead.
        let complete = meta["params"].as_array().unwrap().iter().all(|p| p["stored"] != false);
        let net = example(name);
        let mut args = vec![
            "eval",
            net.as_str(),
            "--input",
            &arg,
            "--output",
            out.to_str().unwrap(),
            "--device",
            "cpu",
        ];
        if complete {
            args.extend(["--weights", weights.as_str()]);
        }
        ok(&args);
        for o in meta["outputs"].as_array().unwrap() {
            let got = netc::io::read_npy(out.join(format!("{}.npy", o["name"].as_str().unwrap()))).unwrap();
            let shape: Vec<usize> = o["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(got.shape, shape, "{name}");
            if complete {
                let want =
                    netc::io::read_npy(root().join("tests/data/torch").join(o["file"].as_str().unwrap())).unwrap();
                let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
                let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let worst = g.iter().zip(&w).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    worst <= 1e-5 * scale,
                    "{name}: netc eval differs from PyTorch by {worst:e}"
                );
            }
        }
    }
    // No GPU on this machine: `auto` says so in one line and runs on the CPU.
    if netc::device::cuda::CudaDevice::new(0).is_err() {
        let (_, err) = ok(&[
            "eval",
            &example("mlp"),
            "--input",
            "x=tests/data/torch/mlp.input.x.npy",
            "--output",
            dir.to_str().unwrap(),
        ]);
        let notices: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("running on the cpu device"))
            .collect();
        assert_eq!(notices.len(), 1, "{err}");
    }
}

fn losses(log: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

fn train(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let log = dir.join(format!("{name}.jsonl"));
    let mut args = vec![
        "run",
        "examples/mnist_cnn.net",
        "--device",
        "cpu",
        "--batch",
        "16",
        "--log",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args);
    log
}

#[test]
fn training_is_reproducible_and_resumable() {
    let dir = tmp("train");
    let a = train(&dir, "a", &["--steps", "6", "--seed", "3"]);
    let b = train(&dir, "b", &["--steps", "6", "--seed", "3"]);
    assert_eq!(
        losses(&a),
        losses(&b),
        "same seed, same device: the same losses, bit for bit"
    );
    assert_eq!(losses(&a).len(), 6);
    let c = train(&dir, "c", &["--steps", "6", "--seed", "4"]);
    assert_ne!(
        losses(&a),
        losses(&c),
        "another seed shuffles and initialises differently"
    );

    // Interrupted after 3 steps, resumed from the checkpoint: steps 4 to 6
    // must be the uninterrupted run's.
    let ck = dir.join("ck-{step}.safetensors");
    train(
        &dir,
        "first",
        &[
            "--steps",
            "6",
            "--seed",
            "3",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--checkpoint-every",
            "3",
        ],
    );
    let resumed = train(
        &dir,
        "resumed",
        &[
            "--steps",
            "6",
            "--seed",
            "3",
            "--resume",
            dir.join("ck-3.safetensors").to_str().unwrap(),
        ],
    );
    let tail: Vec<(u64, f64)> = losses(&a).into_iter().filter(|(s, _)| *s > 3).collect();
    assert_eq!(losses(&resumed), tail);

    // The epoch record of the log, and the saved weights, are complete.
    let log = std::fs::read_to_string(&a).unwrap();
    let epoch: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    for key in [
        "epoch",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "seconds",
        "samples_per_s",
    ] {
        assert!(
            epoch.get(key).is_some_and(|v| !v.is_null()),
            "epoch record lacks {key}: {epoch}"
        );
    }
    let acc = epoch["val_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let saved = dir.join("w.safetensors");
    train(&dir, "save", &["--steps", "2", "--save", saved.to_str().unwrap()]);
    let w = netc::io::read_safetensors(&saved).unwrap();
    assert_eq!(w["fc1.weight"].shape, vec![128, 1568]);
    assert!(w.contains_key("bn1.running_mean") && w.contains_key("bn1.num_batches_tracked"));
    assert!(
        !w.keys().any(|k| k.starts_with("optimizer.")),
        "--save writes a state_dict, not a checkpoint"
    );
}

#[test]
fn data_on_the_command_line_overrides_the_train_section() {
    let (out, _) = ok(&[
        "run",
        "examples/mlp.net",
        "--device",
        "cpu",
        "--data",
        "npy:tests/data/torch/train_mlp.x.npy,tests/data/torch/train_mlp.y.npy",
        "--batch",
        "4",
        "--epochs",
        "2",
    ]);
    assert!(out.contains("finished: 6 steps"), "{out}");
    let err = fails(&[
        "run",
        "examples/mlp.net",
        "--device",
        "cpu",
        "--data",
        "npy:no/such.npy,tests/data/torch/train_mlp.y.npy",
    ]);
    assert!(err.contains("no/such.npy"), "{err}");
}

#[test]
fn bench_times_inference_and_the_training_step() {
    let (out, _) = ok(&["bench", "examples/mlp.net", "--device", "cpu", "--runs", "2"]);
    assert!(
        out.contains("ms per run") && out.contains("samples/s") && out.contains("kernel time"),
        "{out}"
    );
    let (out, _) = ok(&[
        "bench",
        "examples/mnist_cnn.net",
        "--train",
        "--device",
        "cpu",
        "--runs",
        "1",
        "--batch",
        "8",
    ]);
    assert!(out.contains("training step, batch 8"), "{out}");
}

#[test]
fn grad_writes_loss_and_gradients() {
    let dir = tmp("grad");
    let t = "tests/data/torch";
    let (out, _) = ok(&[
        "grad",
        &format!("{t}/bn_train.net"),
        "--weights",
        &format!("{t}/train_bn_train.safetensors"),
        "--input",
        &format!("x={t}/train_bn_train.x.npy"),
        "--target",
        "label=tests/data/torch/train_bn_train.y.npy",
        "--output",
        dir.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(out.contains("gradients written"), "{out}");
    let loss = netc::io::read_npy(dir.join("loss.npy")).unwrap().to_f64_vec()[0];
    let want = netc::io::read_npy(root().join(t).join("train_bn_train.loss.npy"))
        .unwrap()
        .to_f64_vec()[0];
    assert!((loss - want).abs() < 1e-4 * want);
    let grads = netc::io::read_safetensors(dir.join("grads.safetensors")).unwrap();
    assert_eq!(
        grads.keys().cloned().collect::<Vec<_>>(),
        [
            "bn.bias",
            "bn.weight",
            "conv.bias",
            "conv.weight",
            "fc.bias",
            "fc.weight"
        ]
    );
}
