#!/usr/bin/env python3
"""PyTorch (eager) baseline for examples/mnist_cnn.net: the same network,
data, batch size and optimizer, timed over the same number of steps, so
scripts/gpu-check.sh can set netc's samples/s beside PyTorch's.

Usage: torch_mnist_baseline.py DEVICE STEPS   (prints one JSON line)
"""
import gzip
import json
import struct
import sys
import time

import os

import torch
import torch.nn.functional as F

# The PyTorch twin of examples/mnist_cnn.net, shared with the reference files.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_torch_refs import MnistCnn  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def main():
    device, steps = sys.argv[1], int(sys.argv[2])
    images = read_idx("examples/data/mnist5k-train-images-idx3-ubyte.gz").float().div(255).unsqueeze(1)
    labels = read_idx("examples/data/mnist5k-train-labels-idx1-ubyte.gz").long()
    torch.manual_seed(0)
    model = MnistCnn().to(device)
    model.drop.p = 0.4  # as in examples/mnist_cnn.net
    opt = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.05)
    batch = 64
    batches = [(images[i : i + batch].to(device), labels[i : i + batch].to(device)) for i in range(0, len(images) - batch + 1, batch)]

    def step(i):
        x, y = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x)["logits"], y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        return loss

    for i in range(10):  # warm-up: cuDNN autotuning, allocator
        step(i)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    loss.item()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(json.dumps({"framework": "pytorch " + torch.__version__, "device": device, "steps": steps, "seconds": seconds, "samples_per_s": steps * batch / seconds}))


if __name__ == "__main__":
    main()
