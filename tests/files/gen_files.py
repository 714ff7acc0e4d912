#!/usr/bin/python3
"""Regenerate the reference files that tests/test_files.c reads.

Run with Debian's /usr/bin/python3 (numpy, torch) from the repo root:
    /usr/bin/python3 tests/files/gen_files.py
The .npy files come from NumPy itself; the .safetensors file comes from a
small writer that follows the reference implementation (header sorted by
dtype alignment then name, JSON without spaces, padded with spaces to a
multiple of 8, "__metadata__" first).
"""
import json
import os
import struct

import numpy as np
import torch

OUT = os.path.dirname(os.path.abspath(__file__))
BASE = np.arange(6) - 2                       # -2 -1 0 1 2 3
FLOATS = (BASE * 0.5).reshape(2, 3)           # exact in f16, bf16, f32, f64


def npy(name, arr, **kw):
    path = os.path.join(OUT, name)
    if kw:
        with open(path, "wb") as f:
            np.lib.format.write_array(f, arr, **kw)
    else:
        np.save(path, arr)


def gen_npy():
    npy("f32_2x3.npy", FLOATS.astype("<f4"))
    npy("f64_2x3.npy", FLOATS.astype("<f8"))
    npy("f16_2x3.npy", FLOATS.astype("<f2"))
    npy("i32_2x3.npy", BASE.reshape(2, 3).astype("<i4"))
    npy("i64_2x3.npy", BASE.reshape(2, 3).astype("<i8"))
    npy("i8_2x3.npy", BASE.reshape(2, 3).astype("i1"))
    npy("u8_2x3.npy", (BASE + 250).reshape(2, 3).astype("u1"))
    npy("bool_2x3.npy", (BASE.reshape(2, 3) % 2 == 0))
    npy("scalar_f32.npy", np.array(3.5, dtype="<f4"))
    npy("vec5_i64.npy", np.arange(5, dtype="<i8") * 1000000000000)
    npy("empty_0x3_f32.npy", np.zeros((0, 3), dtype="<f4"))
    npy("rank4_f32.npy", np.arange(24, dtype="<f4").reshape(1, 2, 3, 4))
    npy("v2_f32.npy", FLOATS.astype("<f4"), version=(2, 0))
    npy("v3_f32.npy", FLOATS.astype("<f4"), version=(3, 0))
    npy("bigendian_f32.npy", FLOATS.astype(">f4"))
    npy("fortran_f32.npy", np.asfortranarray(FLOATS.astype("<f4")))
    np.save(os.path.join(OUT, "object.npy"), np.array([1, "a"], dtype=object), allow_pickle=True)
    npy("complex64.npy", np.zeros(2, dtype="<c8"))


def st_bytes(t):
    """Raw little-endian bytes of a torch tensor (bf16 via its bit pattern)."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32",
            torch.int64: "I64", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
            torch.float64: "F64"}


def safetensors_save(path, tensors, metadata):
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {"__metadata__": metadata}
    data = b""
    for name, t in items:
        raw = st_bytes(t.contiguous())
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def gen_safetensors():
    fl = torch.tensor(FLOATS)
    ints = torch.tensor(BASE.reshape(2, 3))
    tensors = {
        "a.f32": fl.float(), "b.f16": fl.half(), "c.bf16": fl.bfloat16(),
        "d.i32": ints.int(), "e.i64": ints.long(), "f.i8": ints.to(torch.int8),
        "g.u8": (ints + 250).to(torch.uint8), "h.bool": ints % 2 == 0, "i.f64": fl.double(),
        "j.scalar": torch.tensor(3.5), "k.empty": torch.zeros(0, 3),
        "layers/0.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
    }
    safetensors_save(os.path.join(OUT, "ref.safetensors"), tensors, {"format": "pt"})


if __name__ == "__main__":
    gen_npy()
    gen_safetensors()
