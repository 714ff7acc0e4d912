#!/usr/bin/env python3
"""make_binary.py -- writes the diag cases that hold bytes an editor would
mangle: a NUL byte, malformed UTF-8 and 4 KiB of seeded random bytes. Run
from tests/diag; the output is committed, so the suite needs no Python."""

def lcg_bytes(n, seed=20240601):
    # a fixed LCG so the bytes are the same on every machine and Python
    out, s = bytearray(), seed
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(s >> 56)
    return bytes(out)

H = b"input x : f32[batch, 4]\ntarget y : i32[batch]\n"
files = {
    "20_nul_byte.nn": H + b"h = dense(x, 3)\x00\noutput h\n",
    "21_random_binary.nn": lcg_bytes(4096),
    "33_invalid_utf8.nn": H + b"h = dense(x, 3) \xff\xfe\noutput h\n",
}
for name, data in files.items():
    with open(name, "wb") as f:
        f.write(data)
