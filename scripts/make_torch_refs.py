#!/usr/bin/env python3
"""Writes netc's PyTorch reference files into tests/data/torch/.

Run from the repository root with a Python that has torch, numpy and
safetensors (keep that virtual environment outside the repository):

    /work/torch-venv/bin/python scripts/make_torch_refs.py

Every model of tests/data/torch/*.net and examples/{cifar_cnn,mlp,resnet,
mnist_cnn}.net is mirrored below by a hand-written torch.nn.Module whose
state_dict names are the names netc gives the .net file's parameters.

Determinism: all random numbers come from a port of netc's own SplitMix64
generator (src/rng.rs), seeded per tensor with zlib.crc32 of a fixed string,
so the values depend on neither torch's RNG nor its version; torch runs on one
thread with deterministic algorithms. Re-running reproduces every file byte
for byte (README.md carries their SHA-256). After writing, the script reads
everything back from disk and re-checks it (see verify()).

Precision: weights and inputs are float32; each reference is computed in
float64 from exactly those float32 values (model and inputs cast to double
after saving), so it is the exact answer for what netc loads.

Size: a tensor with more than --max-stored elements (the fc1.weight of
cifar_cnn and mnist_cnn) is not written into the .safetensors file; the
model's JSON manifest says how to regenerate it bit for bit with netc's Rng.
Its gradient is stored as a fixed sample plus whole-tensor sums. Pass
--max-stored 0 to store everything (files of several MB).
"""

import argparse
import hashlib
import json
import math
import os
import re
import sys
import zlib

import numpy as np
import safetensors
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

OUT = "tests/data/torch"
SCRIPT = "scripts/make_torch_refs.py"
DEFAULT_MAX_STORED = 32768
GRAD_SAMPLE_STRIDE = 127  # prime, so the sample walks across rows and columns

SGD = {"lr": 0.05, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}
ADAM = {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}
STEPS = 20

# --------------------------------------------------------------------------
# netc's random generator (src/rng.rs), bit for bit.
# --------------------------------------------------------------------------

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix(seed, n):
    """The first n outputs of Rng::new(seed).next_u64(), as uint64."""
    with np.errstate(over="ignore"):
        k = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(seed) + k * np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def rng_uniform(seed, n):
    """Rng::uniform: 53 random bits, in [0, 1)."""
    return (_splitmix(seed, n) >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))


def rng_range(seed, n, lo, hi):
    """Rng::range(lo, hi) n times: lo + (hi - lo) * uniform, in float64."""
    return np.float64(lo) + (np.float64(hi) - np.float64(lo)) * rng_uniform(seed, n)


def rng_normal(seed, n):
    """Rng::normal n times (Box-Muller, two uniforms each), using the C
    library's log and cos as Rust's f64::ln and f64::cos do."""
    u = rng_uniform(seed, 2 * n).tolist()
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        u1 = 1.0 - u[2 * i]
        u2 = u[2 * i + 1]
        out[i] = math.sqrt(-2.0 * math.log(u1)) * math.cos(math.tau * u2)
    return out


def rng_int(seed, n, lo, hi):
    """Rng::int(lo, hi) n times: uniform integer in [lo, hi]."""
    return (np.int64(lo) + (_splitmix(seed, n) % np.uint64(hi - lo + 1)).astype(np.int64)).astype(np.int64)


def seed_of(key):
    return zlib.crc32(key.encode("utf-8"))


def _self_test_rng():
    # Values printed by src/rng.rs (Rust) for the same calls.
    assert [int(v) for v in _splitmix(12345, 3)] == [
        2454886589211414944, 3778200017661327597, 2205171434679333405]
    assert rng_int(7, 10, 0, 9).tolist() == [7, 4, 6, 3, 4, 5, 8, 2, 5, 5]


# --------------------------------------------------------------------------
# The models, mirroring the .net files (attribute names = netc layer names).
# --------------------------------------------------------------------------


class ConvVariants(nn.Module):  # tests/data/torch/conv_variants.net
    def __init__(self):
        super().__init__()
        self.strided = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.dilated = nn.Conv2d(6, 6, (3, 2), padding=(2, 1), dilation=2, groups=3)
        self.pointwise = nn.Conv2d(6, 4, 1, bias=False)
        self.wide = nn.Conv2d(4, 8, (1, 3), stride=(1, 2), groups=4)

    def forward(self, x):
        a = self.strided(x)
        b = F.relu(self.dilated(a))
        c = self.pointwise(b)
        return {"a": a, "b": b, "c": c, "d": self.wide(x)}


class Pooling(nn.Module):  # tests/data/torch/pooling.net
    def forward(self, x):
        return {
            "max_plain": F.max_pool2d(x, 2),
            "max_padded": F.max_pool2d(x, 3, stride=2, padding=1),
            "max_dilated": F.max_pool2d(x, (3, 2), stride=(2, 1), dilation=(2, 1), ceil_mode=True),
            "avg_plain": F.avg_pool2d(x, 2),
            "avg_padded": F.avg_pool2d(x, 3, stride=2, padding=1),
            "avg_exclusive": F.avg_pool2d(x, (3, 2), stride=2, padding=1, count_include_pad=False, ceil_mode=True),
            "global": F.adaptive_avg_pool2d(x, 1),
        }


class PoolingCeil(nn.Module):  # tests/data/torch/pooling_ceil.net (added here)
    def forward(self, x):
        return {
            "max_ceil": F.max_pool2d(x, 3, stride=2, ceil_mode=True),
            "max_ceil_dilated": F.max_pool2d(x, (3, 2), stride=(2, 3), padding=1, dilation=(2, 2), ceil_mode=True),
            "max_ceil_drop": F.max_pool2d(x, 2, stride=3, padding=1, ceil_mode=True),
            "avg_ceil_inclusive": F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True),
            "avg_ceil_exclusive": F.avg_pool2d(x, (2, 3), stride=3, padding=1, count_include_pad=False, ceil_mode=True),
        }


class BatchNorm(nn.Module):  # tests/data/torch/batchnorm.net
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(5, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.plain = nn.BatchNorm2d(5, affine=False, eps=0.001)

    def forward(self, x):
        return {"y": F.relu(self.bn(self.conv(x))), "z": self.plain(x)}


class Activations(nn.Module):  # tests/data/torch/activations.net
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 7)

    def forward(self, x):
        h = self.fc(x)
        return {
            "relu_out": F.relu(h),
            "leaky": F.leaky_relu(h, 0.2),
            "sig": torch.sigmoid(h),
            "tanh_out": torch.tanh(h),
            "gelu_exact": F.gelu(h),
            "gelu_tanh": F.gelu(h, approximate="tanh"),
            "probs": F.softmax(h, dim=1),
            "log_probs": F.log_softmax(h, dim=-1),
        }


class BnTrain(nn.Module):  # tests/data/torch/bn_train.net
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, momentum=0.2)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return {"logits": self.fc(torch.flatten(h, 1))}


class CifarCnn(nn.Module):  # examples/cifar_cnn.net
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 16 * 16, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, image):
        h = F.max_pool2d(F.relu(self.conv1(image)), 2)
        return {"logits": self.fc2(F.relu(self.fc1(torch.flatten(h, 1))))}


class Mlp(nn.Module):  # examples/mlp.net
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, 5)

    def forward(self, x):
        h1 = F.gelu(self.fc1(x))
        h2 = torch.tanh(self.fc2(h1))
        logits = self.fc3(h2)
        return {"logits": logits, "probs": F.softmax(logits, dim=1)}


class Residual(nn.Module):  # block residual(x, c) of examples/resnet.net
    def __init__(self, c):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.na = nn.BatchNorm2d(c)
        self.b = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.nb = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.nb(self.b(F.relu(self.na(self.a(x))))))


class ResNet(nn.Module):  # examples/resnet.net
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.head = nn.Linear(32, 10)
        self.res1 = Residual(16)
        self.res2 = Residual(16)
        self.res3 = Residual(32)

    def forward(self, image):
        h = F.relu(self.bn(self.stem(image)))
        res1 = self.res1(h)
        res2 = self.res2(res1)
        h2 = F.relu(self.down(res2))
        res3 = self.res3(h2)
        return {"logits": self.head(torch.flatten(F.adaptive_avg_pool2d(res3, 1), 1))}


class MnistCnn(nn.Module):  # examples/mnist_cnn.net
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.drop = nn.Dropout(0.25)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, image):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(image))), 2)
        h = F.max_pool2d(F.relu(self.bn2(self.conv2(h))), 2)
        return {"logits": self.fc2(self.drop(F.relu(self.fc1(torch.flatten(h, 1)))))}


# name -> (net file, module class, {input name: shape}, [output names in .net order])
B = 2
MODELS = {
    "conv_variants": ("tests/data/torch/conv_variants.net", ConvVariants, {"x": [B, 4, 9, 11]}, ["a", "b", "c", "d"]),
    "pooling": ("tests/data/torch/pooling.net", Pooling, {"x": [B, 3, 11, 10]},
                ["max_plain", "max_padded", "max_dilated", "avg_plain", "avg_padded", "avg_exclusive", "global"]),
    "pooling_ceil": ("tests/data/torch/pooling_ceil.net", PoolingCeil, {"x": [B, 2, 10, 9]},
                     ["max_ceil", "max_ceil_dilated", "max_ceil_drop", "avg_ceil_inclusive", "avg_ceil_exclusive"]),
    "batchnorm": ("tests/data/torch/batchnorm.net", BatchNorm, {"x": [B, 5, 6, 7]}, ["y", "z"]),
    "activations": ("tests/data/torch/activations.net", Activations, {"x": [B, 12]},
                    ["relu_out", "leaky", "sig", "tanh_out", "gelu_exact", "gelu_tanh", "probs", "log_probs"]),
    "bn_train": ("tests/data/torch/bn_train.net", BnTrain, {"x": [B, 3, 6, 6]}, ["logits"]),
    "cifar_cnn": ("examples/cifar_cnn.net", CifarCnn, {"image": [B, 3, 32, 32]}, ["logits"]),
    "mlp": ("examples/mlp.net", Mlp, {"x": [B, 20]}, ["logits", "probs"]),
    "resnet": ("examples/resnet.net", ResNet, {"image": [B, 3, 32, 32]}, ["logits"]),
    "mnist_cnn": ("examples/mnist_cnn.net", MnistCnn, {"image": [B, 1, 28, 28]}, ["logits"]),
}
INFERENCE = ["conv_variants", "pooling", "pooling_ceil", "batchnorm", "activations",
             "cifar_cnn", "mlp", "resnet", "mnist_cnn"]
# name -> (batch, classes)
TRAINING = {"cifar_cnn": (8, 10), "mlp": (16, 5), "bn_train": (6, 5)}

# --------------------------------------------------------------------------
# Parameters: generation, manifest, storage.
# --------------------------------------------------------------------------


def param_inits(model, prefix):
    """state_dict name -> (init description, trainable), in state_dict order."""
    modules = dict(model.named_modules())
    trainable = {n for n, _ in model.named_parameters()}
    out = {}
    for name, t in model.state_dict().items():
        mod_name, _, leaf = name.rpartition(".")
        mod = modules[mod_name]
        seed = seed_of(f"{prefix}/{name}")
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            w = mod.weight
            fan_in = w.shape[1] * int(np.prod(w.shape[2:], dtype=np.int64))
            bound = 1.0 / math.sqrt(fan_in)
            init = {"kind": "uniform", "lo": -bound, "hi": bound, "fan_in": int(fan_in), "seed": seed}
        elif isinstance(mod, nn.BatchNorm2d):
            init = {
                "weight": {"kind": "uniform", "lo": 0.5, "hi": 1.5, "seed": seed},
                "bias": {"kind": "uniform", "lo": -0.5, "hi": 0.5, "seed": seed},
                "running_mean": {"kind": "uniform", "lo": -1.0, "hi": 1.0, "seed": seed},
                "running_var": {"kind": "uniform", "lo": 0.5, "hi": 2.0, "seed": seed},
                "num_batches_tracked": {"kind": "const", "value": 0},
            }[leaf]
        else:
            raise ValueError(f"no initialisation rule for {name}")
        out[name] = (init, name in trainable)
    return out


def generate(init, shape, dtype):
    n = int(np.prod(shape, dtype=np.int64))
    if init["kind"] == "uniform":
        v = rng_range(init["seed"], n, init["lo"], init["hi"])
    elif init["kind"] == "const":
        v = np.full(n, init["value"], dtype=np.float64)
    else:
        raise ValueError(init)
    return torch.from_numpy(v.astype(np.float32 if dtype == "f32" else np.int64).reshape(shape))


def make_state(model, prefix, max_stored):
    """Fills the model's state with generated float32 values; returns
    (state_dict, manifest, names of the tensors to store)."""
    sd = model.state_dict()
    manifest, stored, state = [], [], {}
    for name, (init, trainable) in param_inits(model, prefix).items():
        shape = list(sd[name].shape)
        dtype = "i64" if sd[name].dtype == torch.int64 else "f32"
        t = generate(init, shape, dtype)
        state[name] = t
        keep = max_stored <= 0 or t.numel() <= max_stored
        manifest.append({"name": name, "shape": shape, "dtype": dtype, "trainable": trainable,
                         "stored": keep, "init": init})
        if keep:
            stored.append(name)
    model.load_state_dict(state)
    return state, manifest, stored


def load_state(path, manifest):
    """The float32/int64 state: the stored tensors of `path` plus the regenerated rest."""
    state = load_file(path) if os.path.exists(path) else {}
    for p in manifest:
        if p["stored"]:
            assert p["name"] in state, (path, p["name"])
        else:
            assert p["name"] not in state, (path, p["name"])
            state[p["name"]] = generate(p["init"], p["shape"], p["dtype"])
    assert set(state) == {p["name"] for p in manifest}, path
    return state


def save_tensors(path, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def make_input(key, shape):
    n = int(np.prod(shape, dtype=np.int64))
    return rng_normal(seed_of(key), n).astype(np.float32).reshape(shape)


def np_save(path, arr):
    np.save(path, arr, allow_pickle=False)


def as_double_model(cls, state):
    m = cls()
    m.load_state_dict(state)
    return m.double()


def jdump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


# --------------------------------------------------------------------------
# A. Inference references.
# --------------------------------------------------------------------------


def infer(cls, state, inputs):
    m = as_double_model(cls, state).eval()
    with torch.no_grad():
        outs = m(**{k: torch.from_numpy(v.astype(np.float64)) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outs.items()}


def write_inference(name, max_stored):
    net, cls, in_shapes, out_names = MODELS[name]
    torch.manual_seed(0)  # only for module construction; every value is overwritten
    model = cls()
    state, manifest, stored = make_state(model, name, max_stored)
    weights = f"{name}.safetensors"
    save_tensors(os.path.join(OUT, weights), {k: state[k] for k in stored})
    inputs = {k: make_input(f"{name}/input/{k}", s) for k, s in in_shapes.items()}
    for k, v in inputs.items():
        np_save(os.path.join(OUT, f"{name}.input.{k}.npy"), v)
    outs = infer(cls, state, inputs)
    assert list(outs) == out_names, (name, list(outs))
    for k, v in outs.items():
        assert v.dtype == np.float64
        np_save(os.path.join(OUT, f"{name}.output.{k}.npy"), v)
    jdump(os.path.join(OUT, f"{name}.json"), {
        "model": name,
        "net": net,
        "mode": "eval",
        "weights": weights,
        "inputs": [{"name": k, "file": f"{name}.input.{k}.npy", "dtype": "f32", "shape": s,
                    "init": {"kind": "normal", "mean": 0.0, "std": 1.0, "seed": seed_of(f"{name}/input/{k}")}}
                   for k, s in in_shapes.items()],
        "outputs": [{"name": k, "file": f"{name}.output.{k}.npy", "dtype": "f64", "shape": list(outs[k].shape)}
                    for k in out_names],
        "params": manifest,
    })


# --------------------------------------------------------------------------
# B. Training references.
# --------------------------------------------------------------------------


def loss_of(m, x, y):
    return F.cross_entropy(m(x)["logits"], y)


def trajectory(cls, state, x, y, kind):
    m = as_double_model(cls, state).train()
    if kind == "sgd":
        opt = torch.optim.SGD(m.parameters(), **SGD)
    else:
        opt = torch.optim.Adam(m.parameters(), lr=ADAM["lr"], betas=tuple(ADAM["betas"]), eps=ADAM["eps"],
                               weight_decay=ADAM["weight_decay"], amsgrad=ADAM["amsgrad"])
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_of(m, x, y)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return np.array(losses, dtype=np.float64)


def train_refs(cls, state, x_np, y_np):
    """Everything the training references hold, computed from the f32 state."""
    x = torch.from_numpy(x_np.astype(np.float64))
    y = torch.from_numpy(y_np)
    m = as_double_model(cls, state).train()
    loss = loss_of(m, x, y)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in m.named_buffers()}  # after one train-mode forward
    return {
        "loss": np.array(loss.item(), dtype=np.float64),
        "grads": grads,
        "after1": buffers,
        "sgd": trajectory(cls, state, x, y, "sgd"),
        "adam": trajectory(cls, state, x, y, "adam"),
    }


def grad_sample(g):
    flat = g.reshape(-1)
    idx = torch.arange(0, flat.numel(), GRAD_SAMPLE_STRIDE, dtype=torch.int64)
    return {"index": idx, "values": flat[idx].clone(), "sum": flat.sum(), "abs_sum": flat.abs().sum(),
            "sum_sq": (flat * flat).sum()}


def write_training(name, max_stored):
    net, cls, in_shapes, _ = MODELS[name]
    batch, classes = TRAINING[name]
    prefix = f"train_{name}"
    torch.manual_seed(0)
    model = cls()
    state, manifest, stored = make_state(model, prefix, max_stored)
    save_tensors(os.path.join(OUT, f"{prefix}.safetensors"), {k: state[k] for k in stored})
    (in_name, in_shape), = in_shapes.items()
    x_shape = [batch] + in_shape[1:]
    x = make_input(f"{prefix}/x", x_shape)
    y = rng_int(seed_of(f"{prefix}/y"), batch, 0, classes - 1)
    np_save(os.path.join(OUT, f"{prefix}.x.npy"), x)
    np_save(os.path.join(OUT, f"{prefix}.y.npy"), y)
    r = train_refs(cls, state, x, y)
    np_save(os.path.join(OUT, f"{prefix}.loss.npy"), r["loss"])
    np_save(os.path.join(OUT, f"{prefix}.sgd.npy"), r["sgd"])
    np_save(os.path.join(OUT, f"{prefix}.adam.npy"), r["adam"])
    full = {k: g for k, g in r["grads"].items() if max_stored <= 0 or g.numel() <= max_stored}
    sampled = {k: g for k, g in r["grads"].items() if k not in full}
    save_tensors(os.path.join(OUT, f"{prefix}.grads.safetensors"), full)
    files = {
        "weights": f"{prefix}.safetensors",
        "x": f"{prefix}.x.npy",
        "y": f"{prefix}.y.npy",
        "loss": f"{prefix}.loss.npy",
        "grads": f"{prefix}.grads.safetensors",
        "sgd": f"{prefix}.sgd.npy",
        "adam": f"{prefix}.adam.npy",
    }
    if sampled:
        s = {}
        for k, g in sampled.items():
            for part, v in grad_sample(g).items():
                s[f"{k}.{part}"] = v
        save_tensors(os.path.join(OUT, f"{prefix}.grads_sampled.safetensors"), s)
        files["grads_sampled"] = f"{prefix}.grads_sampled.safetensors"
    after1 = {k: v for k, v in r["after1"].items()}
    if after1:
        save_tensors(os.path.join(OUT, f"{prefix}.after1.safetensors"), after1)
        files["after1"] = f"{prefix}.after1.safetensors"
    jdump(os.path.join(OUT, f"{prefix}.json"), {
        "model": name,
        "net": net,
        "mode": "train",
        "input": in_name,
        "output": "logits",
        "batch": batch,
        "classes": classes,
        "x": {"dtype": "f32", "shape": x_shape,
              "init": {"kind": "normal", "mean": 0.0, "std": 1.0, "seed": seed_of(f"{prefix}/x")}},
        "y": {"dtype": "i64", "shape": [batch],
              "init": {"kind": "int", "lo": 0, "hi": classes - 1, "seed": seed_of(f"{prefix}/y")}},
        "loss": "F.cross_entropy(logits, y), mean over the batch (no label smoothing, no class weights)",
        "precision": "float64 computation from the float32 weights and x",
        "batch_order": "full batch every step, no shuffling",
        "steps": STEPS,
        "trajectory": "sgd/adam .npy hold the loss before each of the `steps` optimizer steps; index 0 is `loss`",
        "sgd": {"optimizer": "torch.optim.SGD", **SGD},
        "adam": {"optimizer": "torch.optim.Adam", **ADAM},
        "grads_sampled": ({"stride": GRAD_SAMPLE_STRIDE, "params": sorted(sampled),
                           "layout": "<param>.index: int64 flat row-major indices 0, stride, 2*stride, ...; "
                                     "<param>.values: f64 gradient at those indices; <param>.sum, .abs_sum, "
                                     ".sum_sq: f64 scalars over the whole gradient"}
                          if sampled else None),
        "after1": ("buffers after one train-mode forward pass from the initial weights, before any step "
                   "(running stats: momentum update with the unbiased batch variance)" if after1 else None),
        "files": files,
        "params": manifest,
    })


# --------------------------------------------------------------------------
# Verification: read everything back from disk and recompute.
# --------------------------------------------------------------------------


def _net_layers(path):
    """Expected state_dict names and shapes, read from the .net file itself
    (a small, independent reading of its layer declarations and blocks)."""
    src = open(path).read()
    src = re.sub(r"#[^\n]*", "", src)

    def conv2d(cin, cout, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        d = {"weight": [cout, cin // groups, kh, kw]}
        if bias:
            d["bias"] = [cout]
        return d

    def linear(fin, fout, bias=True):
        d = {"weight": [fout, fin]}
        if bias:
            d["bias"] = [fout]
        return d

    def batchnorm2d(n, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        d = {}
        if affine:
            d.update(weight=[n], bias=[n])
        if track_running_stats:
            d.update(running_mean=[n], running_var=[n], num_batches_tracked=[])
        return d

    kinds = {"Conv2d": conv2d, "Linear": linear, "BatchNorm2d": batchnorm2d, "Dropout": lambda p: {}}

    def pyargs(s):
        s = re.sub(r"\b(\w+)\s*:", r"\1=", s)
        return s.replace("true", "True").replace("false", "False")

    def layers_in(body, env):
        out = {}
        for m in re.finditer(r"^\s*(\w+)\s*=\s*(Conv2d|Linear|BatchNorm2d|Dropout)\((.*)\)\s*$", body, re.M):
            spec = eval(f"_k({pyargs(m.group(3))})", {"_k": kinds[m.group(2)]}, dict(env))
            for leaf, shape in spec.items():
                out[f"{m.group(1)}.{leaf}"] = shape
        return out

    blocks = {}
    for m in re.finditer(r"block\s+(\w+)\s*\(([^)]*)\)\s*\{(.*?)\n\}", src, re.S):
        blocks[m.group(1)] = ([a.strip() for a in m.group(2).split(",")], m.group(3))
    body = re.search(r"model\s+\w+\s*\{(.*)\n\}", src, re.S).group(1)
    names = layers_in(body, {})
    for bname, (params, bbody) in blocks.items():
        for m in re.finditer(rf"^\s*(\w+)\s*=\s*(.*?)\b{bname}\((.*?)\)\s*$", body, re.M):
            args = [a.strip() for a in m.group(3).split(",")]
            if "|>" in m.group(2):
                args = ["<piped>"] + args
            env = {}
            for p, a in zip(params, args):
                try:
                    env[p] = int(eval(a, {}, {}))
                except Exception:
                    env[p] = None
            for k, v in layers_in(bbody, env).items():
                names[f"{m.group(1)}.{k}"] = v
    return names


def _check_names(name, manifest):
    expected = _net_layers(MODELS[name][0])
    got = {p["name"]: p["shape"] for p in manifest}
    assert got == expected, (name, sorted(set(got) ^ set(expected)),
                             {k: (got.get(k), expected.get(k)) for k in got if got.get(k) != expected.get(k)})


def _same(a, b, what):
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), what


def verify():
    for name in INFERENCE:
        _, cls, _, out_names = MODELS[name]
        meta = json.load(open(os.path.join(OUT, f"{name}.json")))
        _check_names(name, meta["params"])
        state = load_state(os.path.join(OUT, meta["weights"]), meta["params"])
        for p in meta["params"]:
            assert state[p["name"]].dtype == (torch.int64 if p["dtype"] == "i64" else torch.float32)
            assert list(state[p["name"]].shape) == p["shape"]
        inputs = {}
        for i in meta["inputs"]:
            inputs[i["name"]] = np.load(os.path.join(OUT, i["file"]))
            assert inputs[i["name"]].dtype == np.float32 and list(inputs[i["name"]].shape) == i["shape"]
        outs = infer(cls, state, inputs)
        assert [o["name"] for o in meta["outputs"]] == out_names == list(outs)
        for o in meta["outputs"]:
            _same(np.load(os.path.join(OUT, o["file"])), outs[o["name"]], (name, o["name"]))
    for name in TRAINING:
        _, cls, _, _ = MODELS[name]
        prefix = f"train_{name}"
        meta = json.load(open(os.path.join(OUT, f"{prefix}.json")))
        files = {k: os.path.join(OUT, v) for k, v in meta["files"].items()}
        _check_names(name, meta["params"])
        state = load_state(files["weights"], meta["params"])
        x = np.load(files["x"])
        y = np.load(files["y"])
        assert x.dtype == np.float32 and list(x.shape) == meta["x"]["shape"] and x.shape[0] == meta["batch"]
        assert y.dtype == np.int64 and y.shape == (meta["batch"],) and 0 <= y.min() and y.max() < meta["classes"]
        r = train_refs(cls, state, x, y)
        _same(np.load(files["loss"]), r["loss"], (name, "loss"))
        assert np.load(files["loss"]).shape == ()
        for k in ("sgd", "adam"):
            traj = np.load(files[k])
            _same(traj, r[k], (name, k))
            assert traj.shape == (STEPS,) and traj[0] == r["loss"]
        grads = load_file(files["grads"])
        trainable = {p["name"] for p in meta["params"] if p["trainable"]}
        assert set(r["grads"]) == trainable
        sampled = set(meta["grads_sampled"]["params"]) if meta["grads_sampled"] else set()
        assert set(grads) | sampled == trainable and not set(grads) & sampled
        for k, g in grads.items():
            assert g.dtype == torch.float64
            _same(g.numpy(), r["grads"][k].numpy(), (name, "grad", k))
        if sampled:
            s = load_file(files["grads_sampled"])
            for k in sampled:
                for part, v in grad_sample(r["grads"][k]).items():
                    _same(s[f"{k}.{part}"].numpy(), v.numpy(), (name, "grad sample", k, part))
        if "after1" in files:
            a1 = load_file(files["after1"])
            assert set(a1) == set(r["after1"])
            for k, v in a1.items():
                _same(v.numpy(), r["after1"][k].numpy(), (name, "after1", k))
            if name == "bn_train":  # PyTorch's rule, written out by hand
                xd = torch.from_numpy(x.astype(np.float64))
                m = as_double_model(cls, state)
                h = m.conv(xd)
                n = h.numel() // h.shape[1]
                mean = h.mean(dim=(0, 2, 3))
                var_unbiased = h.var(dim=(0, 2, 3), unbiased=True)
                mom = 0.2
                rm = (1 - mom) * state["bn.running_mean"].double() + mom * mean
                rv = (1 - mom) * state["bn.running_var"].double() + mom * var_unbiased
                assert n == 6 * 6 * 6
                assert torch.allclose(rm, a1["bn.running_mean"], rtol=0, atol=1e-14)
                assert torch.allclose(rv, a1["bn.running_var"], rtol=0, atol=1e-14)
                assert a1["bn.num_batches_tracked"].dtype == torch.int64
                assert a1["bn.num_batches_tracked"].shape == () and int(a1["bn.num_batches_tracked"]) == 1
    # Every safetensors file reloads with the same bytes through safetensors itself.
    for f in sorted(os.listdir(OUT)):
        if f.endswith(".safetensors"):
            path = os.path.join(OUT, f)
            with safetensors.safe_open(path, framework="pt") as h:
                for k in h.keys():
                    h.get_tensor(k)
    print("verify: all references recomputed and equal; parameter names match the .net files")


# --------------------------------------------------------------------------
# C. README.
# --------------------------------------------------------------------------


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def write_readme(max_stored):
    lines = []
    w = lines.append
    files = sorted(f for f in os.listdir(OUT) if f != "README.md" and not f.startswith("."))
    w("# PyTorch reference files")
    w("")
    w("Reference inputs, weights, outputs, gradients and training trajectories that netc's")
    w("numerics are checked against. Everything here except the `.net` files and this README")
    w("is written by `scripts/make_torch_refs.py`; do not edit it by hand.")
    w("")
    w("## How it was made")
    w("")
    w("```")
    w("python3 -m venv /work/torch-venv   # outside the repository")
    w("/work/torch-venv/bin/pip install torch numpy safetensors")
    w(f"/work/torch-venv/bin/python {SCRIPT}" + ("" if max_stored == DEFAULT_MAX_STORED else f" --max-stored {max_stored}"))
    w("```")
    w("")
    w(f"with torch {torch.__version__}, numpy {np.__version__}, safetensors {safetensors.__version__}, "
      f"Python {sys.version.split()[0]}, on the CPU, one thread, deterministic algorithms.")
    w("Re-running reproduces every file byte for byte (the SHA-256 list below). The script ends by")
    w("reading everything back from disk, recomputing it and comparing bit for bit, and by checking")
    w("each weights file's names and shapes against an independent reading of the `.net` file.")
    w("")
    w("## Conventions")
    w("")
    w("- Layouts are PyTorch's: activations NCHW, conv weights OIHW (`[out, in/groups, kh, kw]`),")
    w("  Linear weights `[out, in]`. Names are `state_dict` names (`conv1.weight`, `res1.na.running_mean`).")
    w("- Weights (`*.safetensors` without `.grads`/`.after1`) and inputs (`*.input.*.npy`, `train_*.x.npy`)")
    w("  are **float32**; `num_batches_tracked` is an **int64** 0-d tensor; labels (`train_*.y.npy`) are int64.")
    w("- Every reference (outputs, losses, gradients, trajectories, `after1` running statistics) is")
    w("  **float64**, computed with the model and inputs cast to double *after* the float32 values were")
    w("  saved, so it is the exact answer for the float32 values netc loads. Compare netc's float32")
    w("  results with a tolerance.")
    w("- Batch size: 2 for every inference reference; 8 (cifar_cnn), 16 (mlp), 6 (bn_train) for training.")
    w("- `.npy` files are numpy format 1.0, little-endian, C order; `train_*.loss.npy` is 0-d.")
    w("")
    w("### Where the values come from")
    w("")
    w("All random values come from netc's own generator, `src/rng.rs` (SplitMix64), ported to Python")
    w("bit for bit, with one generator per tensor: `Rng::new(seed)` with `seed = zlib.crc32(key)`, the key")
    w("being `<model>/<param name>` (inference), `train_<model>/<param name>`, `<model>/input/<input>`,")
    w("`train_<model>/x` or `train_<model>/y`. Elements are drawn in row-major order. Each JSON manifest")
    w("(`params[].init`) gives the seed and the rule:")
    w("")
    w("- `uniform {lo, hi}`: `rng.range(lo, hi) as f32` per element. Conv and Linear weights and biases")
    w("  use PyTorch's default distribution U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (`fan_in` = in/groups*kh*kw,")
    w("  given in the manifest; compute the bound as `1.0 / (fan_in as f64).sqrt()`). BatchNorm gets")
    w("  non-trivial values: weight U(0.5, 1.5), bias U(-0.5, 0.5), running_mean U(-1, 1), running_var")
    w("  U(0.5, 2); `num_batches_tracked` = 0.")
    w("- `normal {mean 0, std 1}`: `rng.normal() as f32` per element (inputs).")
    w("- `int {lo, hi}`: `rng.int(lo, hi)` per element (labels).")
    w("")
    w("These are PyTorch's distributions, not PyTorch's random stream: the values do not depend on the")
    w("torch version.")
    w("")
    w("### Tensors too big to store")
    w("")
    w(f"A tensor with more than {max_stored} elements is **not** written into its `.safetensors` file")
    w("(`\"stored\": false` in the manifest): regenerate it with the `uniform` rule above (it is exact: only")
    w("IEEE add/multiply/sqrt are involved). This applies to `fc1.weight` of `cifar_cnn` (128x8192,")
    w("4 MiB as f32) and `mnist_cnn` (128x1568) and of `train_cifar_cnn`. The gradient of")
    w("`train_cifar_cnn`'s `fc1.weight` (8 MiB as f64) is in `train_cifar_cnn.grads_sampled.safetensors`")
    w(f"instead of `.grads.safetensors`: `fc1.weight.index` (int64 flat indices 0, {GRAD_SAMPLE_STRIDE}, "
      f"{2 * GRAD_SAMPLE_STRIDE}, ...),")
    w("`fc1.weight.values` (f64 gradient there), and f64 scalars `fc1.weight.sum`, `.abs_sum`, `.sum_sq` over")
    w("the whole gradient. `--max-stored 0` stores everything in full instead.")
    w("")
    w("In Rust, with `lo = -1.0 / (fan_in as f64).sqrt()` and `hi = -lo`:")
    w("")
    w("```rust")
    w("let mut rng = netc::rng::Rng::new(seed);")
    w("let values: Vec<f32> = (0..numel).map(|_| rng.range(lo, hi) as f32).collect(); // row-major")
    w("```")
    w("")
    w("## Files")
    w("")
    w("### Inference (`<model>`, eval mode)")
    w("")
    w("- `<model>.json`: manifest: the `.net` file, input and output names/shapes/files, and every")
    w("  `state_dict` entry with shape, dtype, trainable, stored, init.")
    w("- `<model>.safetensors`: the float32 `state_dict` (less any tensor marked `stored: false`).")
    w("  `pooling` and `pooling_ceil` have no parameters: their file is a valid safetensors file with")
    w("  **no tensors** (so every model loads the same way).")
    w("- `<model>.input.<input>.npy`: float32 input, values N(0, 1).")
    w("- `<model>.output.<output>.npy`: float64 value of every declared output.")
    w("")
    w("### Training (`train_<model>`, train mode, full batch, no shuffling)")
    w("")
    w("- `train_<model>.json`: hyperparameters (lr, momentum, betas, eps, steps, batch, classes), the loss")
    w("  definition, file names and the parameter manifest.")
    w("- `train_<model>.safetensors`: float32 initial weights. `train_<model>.x.npy` float32,")
    w("  `train_<model>.y.npy` int64 labels in [0, classes).")
    w("- `train_<model>.loss.npy`: 0-d float64 `F.cross_entropy(logits, y)` (mean) at the initial weights.")
    w("- `train_<model>.grads.safetensors`: float64 gradient of that loss for every trainable parameter.")
    w("- `train_<model>.sgd.npy` / `.adam.npy`: float64 [20], the loss before each of 20 steps of")
    w("  `torch.optim.SGD(lr=0.05, momentum=0.9)` / `torch.optim.Adam(lr=1e-3)` (betas (0.9, 0.999),")
    w("  eps 1e-8), each from the initial weights; element 0 equals `.loss.npy`.")
    w("- `train_<model>.after1.safetensors` (models with BatchNorm: bn_train): the buffers after ONE")
    w("  train-mode forward pass, before any step: `bn.running_mean`, `bn.running_var` (float64;")
    w("  `(1 - momentum) * old + momentum * batch_stat` with momentum 0.2 and the *unbiased* batch")
    w("  variance, n = 6*6*6 = 216) and `bn.num_batches_tracked` (int64, 1).")
    w("")
    w("### Added model: `pooling_ceil.net`")
    w("")
    w("In `pooling.net` every `ceil_mode: true` window fits exactly, so ceil_mode changes nothing there.")
    w("`pooling_ceil.net` (written for these references) makes it matter: an extra window that overhangs")
    w("the input (`max_ceil`, `max_ceil_dilated`), the rule that drops a last window starting in the right")
    w("padding (`max_ceil_drop`, `avg_ceil_exclusive`), and the average divisor that counts padding but")
    w("not the ceil overhang (`avg_ceil_inclusive`).")
    w("")
    w("## Parameters per model")
    w("")
    manifests = [(f"{n}.json", n) for n in INFERENCE] + [(f"train_{n}.json", f"train_{n}") for n in TRAINING]
    for fname, label in manifests:
        meta = json.load(open(os.path.join(OUT, fname)))
        w(f"### {label} (`{meta['net']}`)")
        w("")
        if not meta["params"]:
            w("No parameters.")
            w("")
            continue
        w("| name | shape | dtype | trainable | stored |")
        w("| --- | --- | --- | --- | --- |")
        for p in meta["params"]:
            w(f"| `{p['name']}` | {p['shape']} | {p['dtype']} | {'yes' if p['trainable'] else 'no'} | "
              f"{'yes' if p['stored'] else '**no** (regenerate)'} |")
        w("")
    w("## SHA-256")
    w("")
    w("Of every file in this folder but this README:")
    w("")
    w("```")
    for f in files:
        w(f"{sha256(os.path.join(OUT, f))}  {f}")
    w("```")
    w("")
    w(f"and of the script that wrote them: `{sha256(SCRIPT)}  {SCRIPT}`.")
    with open(os.path.join(OUT, "README.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def check_readme():
    """The README's SHA-256 list names exactly the files here, with their hashes."""
    text = open(os.path.join(OUT, "README.md")).read()
    block = text.split("## SHA-256", 1)[1].split("```")[1]
    listed = dict(reversed(line.split("  ", 1)) for line in block.strip().splitlines())
    files = sorted(f for f in os.listdir(OUT) if f != "README.md" and not f.startswith("."))
    assert sorted(listed) == files, "README lists other files"
    for f, h in listed.items():
        assert sha256(os.path.join(OUT, f)) == h, f"README hash of {f} is stale"
    assert f"`{sha256(SCRIPT)}  {SCRIPT}`" in text, "README hash of the script is stale"
    print("verify: README SHA-256 list matches")


def clean():
    """Removes what an earlier run wrote (never the .net files or the README)."""
    for f in os.listdir(OUT):
        if f.endswith((".npy", ".safetensors", ".json")):
            os.remove(os.path.join(OUT, f))


def check_sizes():
    total = 0
    for f in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, f))
        total += size
        if size > 200 * 1024:
            print(f"warning: {f} is {size} bytes", file=sys.stderr)
    print(f"{OUT}: {total} bytes in all")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-stored", type=int, default=DEFAULT_MAX_STORED,
                    help="store tensors up to this many elements; 0 stores every tensor (default %(default)s)")
    ap.add_argument("--verify-only", action="store_true", help="only re-check the files already written")
    args = ap.parse_args()
    if not os.path.isdir(OUT) or not os.path.exists(SCRIPT):
        sys.exit("run this from the repository root")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    _self_test_rng()
    if not args.verify_only:
        clean()
        for name in INFERENCE:
            write_inference(name, args.max_stored)
        for name in TRAINING:
            write_training(name, args.max_stored)
    if not args.verify_only:
        write_readme(args.max_stored)
    verify()
    check_readme()
    check_sizes()


if __name__ == "__main__":
    main()
