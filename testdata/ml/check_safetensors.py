#!/usr/bin/env python3
"""Independent reader for Gauntlet's weights.safetensors, written from the
safetensors specification with numpy only (Debian has no python3-safetensors).

    /usr/bin/python3 testdata/ml/check_safetensors.py MODEL_DIR/weights.safetensors

It applies the reference implementation's checks (header size, JSON header,
dtypes, offsets tiling the buffer without gaps) and prints every tensor.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32, "I8": np.int8}


def read(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    assert n <= 100 * 1024 * 1024 and 8 + n <= len(buf), "bad header length"
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = buf[8 + n:]
    tensors, pos = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        start, end = info["data_offsets"]
        assert start == pos, f"{name}: gap or overlap at {start}"
        dt = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        count = int(np.prod(info["shape"], dtype=np.int64))
        assert end - start == count * dt.itemsize, f"{name}: size mismatch"
        tensors[name] = np.frombuffer(data[start:end], dtype=dt).reshape(info["shape"])
        pos = end
    assert pos == len(data), "trailing bytes"
    return meta, tensors


if __name__ == "__main__":
    meta, tensors = read(sys.argv[1])
    print("metadata", meta)
    for name, t in tensors.items():
        print(name, t.dtype, t.shape, t.ravel()[:4])
