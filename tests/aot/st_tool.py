"""st_tool.py -- safetensors helpers for tests/emit_train.sh (standard library only).

  st_tool.py cmp A B          max abs difference over every f32 tensor of B (weights and
                              optimizer state; "__meta.*" left out), which A must hold with the
                              same shape; prints "max abs diff X"; exit 1 when a tensor is missing
  st_tool.py craft KIND IN OUT   a hostile copy of IN: wrongshape, wrongdtype, missing, nan,
                              unexpected, truncated, badheader, badstep
"""
import json
import struct
import sys
from array import array


def load(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        a, e = v['data_offsets']
        out[k] = [v['dtype'], v['shape'], d[a:e]]
    return out


def save(path, t):
    header, off, data = {}, 0, b''
    for k, (dt, shape, raw) in t.items():
        header[k] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(h)) + h + data)


def cmp(a, b):
    ta, tb = load(a), load(b)
    m = 0.0
    for k, (dt, shape, raw) in tb.items():
        if dt != 'F32' or k.startswith('__meta'):
            continue
        if k not in ta or ta[k][0] != dt or ta[k][1] != shape:
            print('missing or another shape:', k)
            return 1
        x, y = array('f', ta[k][2]), array('f', raw)
        m = max([m] + [abs(p - q) for p, q in zip(x, y)])
    print('max abs diff %.3g' % m)
    return 0


def craft(kind, src, dst):
    t = load(src)
    if kind == 'wrongshape':
        t['fc1.weight'][1] = [256, 64]
    elif kind == 'wrongdtype':
        t['fc1.bias'][0] = 'I32'
    elif kind == 'missing':
        del t['out.bias']
    elif kind == 'nan':
        t['fc2.bias'][2] = struct.pack('<f', float('nan')) + t['fc2.bias'][2][4:]
    elif kind == 'unexpected':
        t['extra.weight'] = ['F32', [1], struct.pack('<f', 1.0)]
    elif kind == 'badstep':
        t['__meta.step'] = ['I64', [1], struct.pack('<q', -5)]
    save(dst, t)
    b = open(dst, 'rb').read()
    if kind == 'truncated':
        b = b[:-100]
    elif kind == 'badheader':
        n = struct.unpack('<Q', b[:8])[0]
        b = b[:8] + b'{"fc1.weight": [1, 2' + b' ' * (n - 20) + b[8 + n:]
    open(dst, 'wb').write(b)
    return 0


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == 'cmp':
        sys.exit(cmp(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 5 and sys.argv[1] == 'craft':
        sys.exit(craft(sys.argv[2], sys.argv[3], sys.argv[4]))
    print(__doc__)
    sys.exit(2)
