#!/usr/bin/python3
"""torch_check.py — optional reference tool for safetensors files (not needed by the C tests).

Run with /usr/bin/python3 (Debian's python3-torch, torch 1.13). A minimal pure-python safetensors
reader/writer, independent of the C code, so the two can check each other:

  torch_check.py list    <file.safetensors | checkpoint dir>   names, dtypes, shapes, CRC check
  torch_check.py convert <in.safetensors> <out.safetensors> [--dtype f32|bf16|f16]
        rewrite a file the way PyTorch's safetensors writer lays it out: keys sorted, data ordered by
        dtype then name, {"format": "pt"} metadata only (no CRCs), header padded with spaces to 8 bytes.
        The C loader must accept the result (BF16/F16 are widened to float).
  torch_check.py compare <a.safetensors> <b.safetensors>      max abs difference per tensor
"""
import json
import os
import struct
import sys
import zlib

import torch

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}


def read(path):
    """Returns (tensors dict name -> torch tensor, metadata dict, crc problems list)."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise SystemExit(f"{path}: truncated ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise SystemExit(f"{path}: header length {n} beyond the file ({len(raw)} bytes)")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    data = raw[8 + n:]
    tensors, bad = {}, []
    for name, info in header.items():
        b, e = info["data_offsets"]
        if e > len(data):
            raise SystemExit(f"{path}: tensor {name} is truncated")
        chunk = data[b:e]
        crc = meta.get("crc32." + name)
        if crc is not None and int(crc, 16) != zlib.crc32(chunk):
            bad.append(name)
        dt = DTYPES[info["dtype"]]
        t = torch.frombuffer(bytearray(chunk), dtype=dt) if chunk else torch.empty(0, dtype=dt)
        tensors[name] = t.reshape(info["shape"])
    return tensors, meta, bad


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_pytorch_style(path, tensors, meta=None):
    """meta: extra string metadata beside {"format": "pt"}."""
    # safetensors sorts data by dtype size (largest first) then by name; the JSON keys end up sorted.
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header, blobs, off = {}, [], 0
    for name in order:
        blob = tensor_bytes(tensors[name])
        header[name] = {"dtype": NAMES[tensors[name].dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    js = json.dumps({"__metadata__": {"format": "pt", **(meta or {})}, **{k: header[k] for k in sorted(header)}},
                    separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for blob in blobs:
            f.write(blob)


def main(argv):
    if len(argv) < 2 or argv[0] not in ("list", "convert", "compare"):
        print(__doc__)
        return 2
    if argv[0] == "list":
        tensors, meta, bad = read(argv[1])
        total = 0
        for name, t in tensors.items():
            total += t.numel()
            print(f"{name:60s} {NAMES[t.dtype]:5s} {list(t.shape)}")
        extra = {k: v for k, v in meta.items() if not k.startswith("crc32.")}
        ncrc = sum(k.startswith("crc32.") for k in meta)
        print(f"{len(tensors)} tensors, {total:,} elements; metadata {extra}; {ncrc} CRCs, {len(bad)} bad")
        for name in bad:
            print(f"CRC MISMATCH: {name}")
        return 1 if bad else 0
    if argv[0] == "convert":
        tensors, _, bad = read(argv[1])
        if bad:
            raise SystemExit(f"CRC mismatch in {bad}")
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[
            argv[argv.index("--dtype") + 1] if "--dtype" in argv else "f32"]
        write_pytorch_style(argv[2], {k: v.to(dtype) for k, v in tensors.items()})
        print(f"wrote {argv[2]}: {len(tensors)} tensors as {dtype}")
        return 0
    a, _, _ = read(argv[1])
    b, _, _ = read(argv[2])
    if set(a) != set(b):
        print(f"different names: only in a {sorted(set(a) - set(b))}, only in b {sorted(set(b) - set(a))}")
        return 1
    worst = 0.0
    for name in sorted(a):
        if a[name].shape != b[name].shape:
            print(f"{name}: shape {list(a[name].shape)} vs {list(b[name].shape)}")
            return 1
        d = (a[name].float() - b[name].float()).abs().max().item() if a[name].numel() else 0.0
        worst = max(worst, d)
        print(f"{name:60s} max|a-b| = {d:.3e}")
    print(f"worst {worst:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
