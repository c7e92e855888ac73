"""Writes the reference files tests/io.rs checks netc's readers and writer against.

Run from the repository root with numpy and safetensors installed (outside the
repository, e.g. `python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy safetensors`):

    /tmp/v/bin/python tests/data/io/make_reference.py

Made with numpy 2.4.6 and safetensors 0.8.0 (Python).
"""

import os

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name, array, version=None):
    path = os.path.join(HERE, name)
    if version is None:
        np.save(path, array)
    else:
        with open(path, "wb") as f:
            np.lib.format.write_array(f, array, version=version)


# What netc writes must be byte-identical to these (F32, F64, I64, C order).
save("f4_2x3.npy", (np.arange(6, dtype="<f4") / 4).reshape(2, 3))
save("f8_scalar.npy", np.array(-1.5, dtype="<f8"))
save("i8_vec.npy", np.array([-3, 0, 2**40], dtype="<i8"))

# Read-only cases: narrower and big-endian types, bool, half, Fortran order,
# and the 2.0 and 3.0 header versions.
save("u1_2x2.npy", np.array([[0, 255], [7, 128]], dtype="|u1"))
save("i2_big_endian.npy", np.array([1, -2, 300], dtype=">i2"))
save("b1.npy", np.array([True, False, True]))
save("f2.npy", np.array([0.5, -2.0, 65504.0], dtype="<f2"))
save("f4_fortran_2x3x4.npy", np.asfortranarray(np.arange(24, dtype="<f4").reshape(2, 3, 4)))
save("i4_v2.npy", np.array([[1, 2], [3, -4]], dtype="<i4"), version=(2, 0))
save("f8_v3.npy", np.array([0.25, 1e300], dtype="<f8"), version=(3, 0))

save_file(
    {
        "conv1.weight": (np.arange(8, dtype=np.float32) - 4).reshape(2, 1, 2, 2),
        "fc.bias": np.array([0.5, -1.0, 2.0], dtype=np.float16),
        "step": np.array([7], dtype=np.int32),
    },
    os.path.join(HERE, "state_dict.safetensors"),
    metadata={"format": "pt"},
)
