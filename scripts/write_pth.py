#!/usr/bin/env python3
"""Writes a PyTorch checkpoint (.pth) from a safetensors file, Python standard library only.

The output is what `torch.save(state_dict, path)` writes, without torch installed:

* default: the zip layout of torch >= 1.6 (as torch 2.x lays it out):
    ARCHIVE/data.pkl              pickle protocol 2: collections.OrderedDict of tensors, each a
                                  REDUCE of torch._utils._rebuild_tensor_v2 with args
                                  (storage, storage_offset, size, stride, requires_grad,
                                  backward_hooks); storage = BINPERSID of the persistent id
                                  ('storage', torch.FloatStorage, 'KEY', 'cpu', numel)
    ARCHIVE/byteorder             b'little'
    ARCHIVE/data/KEY              raw little-endian storage bytes, KEY = '0', '1', ... in pickling
                                  order, records written in sorted(KEY) (string) order
    ARCHIVE/version               b'3\\n'
    ARCHIVE/.data/serialization_id  40 decimal digits (recent torch 2.x; the digits here are a
                                  hash of the records, not torch's c10::hash)
  laid out byte for byte as torch's PyTorchStreamWriter (miniz) does (see _TorchZipWriter):
  stored entries, data descriptors, each record's data 64-byte aligned by an 'FB' extra field
  padded with 'Z', zip64 end records. ARCHIVE is the output file's name without its extension,
  as torch 2.x's torch.save(obj, "vgg19-dcbb9e9d.pth") writes "vgg19-dcbb9e9d/data.pkl";
  torch 1.x, and torch.save to a file object, write "archive/" (--archive-name archive).
  --torch-layout 1.x leaves out byteorder and serialization_id (torch 1.12 writes data.pkl,
  data/*, version); with --archive-name archive --no-metadata the output is byte-identical
  to torch 1.12.1's torch.save of the same OrderedDict.
* --legacy: the pre-1.6 format (_use_new_zipfile_serialization=False), the one torchvision's
  vgg19-dcbb9e9d.pth (2017) and googlenet-1378be20.pth (2019) were saved in (both predate
  torch 1.6 and were never re-uploaded): pickles of the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001 and sys_info,
  then the state dict (persistent ids ('storage', torch.FloatStorage, 'KEY', 'cpu', numel,
  None)), then the sorted list of storage keys, then per key an int64 LE element count and
  the raw bytes.
* --rebuild v1: tensors as torch 0.1.11-0.3 pickled them, torch._utils._rebuild_tensor(storage,
  offset, size, stride); --rebuild v0: as torch <= 0.1.10 did (GLOBAL torch.FloatTensor,
  EMPTY_TUPLE, NEWOBJ, then BUILD with the state (storage, offset, size, stride)) - a 2017
  checkpoint such as vgg19-dcbb9e9d.pth holds one of these two; --rebuild parameter: each
  tensor wrapped in torch._utils._rebuild_parameter(tensor, requires_grad, OrderedDict()).
* Storage layouts torch also writes (for any of the above): --channels-last stores 4-D
  tensors with permuted strides (N, C, H, W) -> (C*H*W, 1, W*C, C), as
  torch.save(t.contiguous(memory_format=torch.channels_last)) does; --shared-storage puts all
  tensors of a dtype into one storage at increasing offsets, as views of one buffer are saved.
  --wrap KEY saves {KEY: state_dict, 'epoch': 3}, as training checkpoints wrap a state dict.
* The state dict carries torch's `_metadata` attribute ({'version': 1} per module, 2 for
  modules with running_mean, i.e. BatchNorm) as module.state_dict() does since torch 0.4;
  --no-metadata drops it (default for --rebuild v0/v1, which predate it).

usage:
  write_pth.py IN.safetensors OUT.pth [--rename OLD=NEW]... [--drop PREFIX]...
               [--timm-vgg] [--dtype keep|F32|F16|BF16] [--legacy] [--rebuild v2|v1|v0|parameter]
               [--archive-name NAME] [--torch-layout 2.x|1.x] [--no-metadata] [--no-check]
               [--channels-last] [--shared-storage] [--wrap KEY]
  write_pth.py --check OUT.pth IN.safetensors [same mapping options]  (verify an existing file)
  write_pth.py --self-test                   (writes and checks every variant in a temp dir)
  write_pth.py --dis OUT.pth                 (pickletools disassembly of the state-dict pickle)

--rename OLD=NEW renames every tensor whose name starts with OLD (first matching rule wins);
--drop PREFIX leaves those tensors out; --timm-vgg maps timm's VGG names to torchvision's
(pre_logits.fc1 -> classifier.0 reshaped to [4096, 25088], pre_logits.fc2 -> classifier.3
reshaped to [4096, 4096], head.fc -> classifier.6), the inverse of timm's _filter_fn.
After writing, the file is read back (stdlib pickle with stand-ins, plus a model of
candle-core 0.11's pickle reader) and compared byte for byte with the input; see check().
"""
import argparse
import array
import collections
import contextlib
import copy
import hashlib
import io
import json
import os
import pickle
import pickletools
import random
import struct
import sys
import tempfile
import types
import zipfile
import zlib

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
ALIGNMENT = 64  # caffe2::serialize::kFieldAlignment
TORCH_1_12_1_SHA256 = "c18b1ec9398675640d9e65fb252ec2959228d8f90bd93e949c0cbc0c92e47c04"

# safetensors dtype -> (torch storage class, element size, array/struct code or None)
DTYPES = {
    "F64": ("DoubleStorage", 8, "d"),
    "F32": ("FloatStorage", 4, "f"),
    "F16": ("HalfStorage", 2, "e"),
    "BF16": ("BFloat16Storage", 2, None),
    "I64": ("LongStorage", 8, "q"),
    "I32": ("IntStorage", 4, "i"),
    "I16": ("ShortStorage", 2, "h"),
    "I8": ("CharStorage", 1, "b"),
    "U8": ("ByteStorage", 1, "B"),
    "BOOL": ("BoolStorage", 1, "?"),
}
STORAGE_DTYPE = {v[0]: k for k, v in DTYPES.items()}
# The storages candle-core 0.11's pickle::rebuild_args accepts (src/pickle.rs:636-646).
CANDLE_STORAGES = {"FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage",
                   "ByteStorage", "LongStorage"}
# The opcodes candle-core 0.11's pickle::OpCode knows (src/pickle.rs:14-49).
CANDLE_OPCODES = {
    "PROTO", "GLOBAL", "BINPUT", "LONG_BINPUT", "EMPTY_TUPLE", "REDUCE", "MARK", "BINUNICODE",
    "BININT", "TUPLE", "BINPERSID", "BININT1", "BININT2", "TUPLE1", "TUPLE2", "TUPLE3",
    "NEWTRUE", "NEWFALSE", "NONE", "BINGET", "LONG_BINGET", "SETITEM", "SETITEMS",
    "EMPTY_DICT", "DICT", "BUILD", "STOP", "NEWOBJ", "EMPTY_LIST", "BINFLOAT", "APPEND",
    "APPENDS", "LONG1",
}


# ----------------------------------------------------------------------------------------
# safetensors

def read_safetensors(path):
    """Returns (OrderedDict name -> (dtype, shape, bytes-like), metadata) in header order."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SystemExit(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise SystemExit(f"{path}: not a safetensors file (header length {n} past the end)")
    header = json.loads(blob[8:8 + n], object_pairs_hook=collections.OrderedDict)
    data = memoryview(blob)[8 + n:]
    meta = header.pop("__metadata__", None)
    tensors = collections.OrderedDict()
    for name, info in header.items():
        dtype, shape = info["dtype"], list(info["shape"])
        if dtype not in DTYPES:
            raise SystemExit(f"{path}: tensor {name}: unsupported dtype {dtype}")
        start, end = info["data_offsets"]
        count = 1
        for d in shape:
            count *= d
        if end - start != count * DTYPES[dtype][1]:
            raise SystemExit(f"{path}: tensor {name}: {end - start} bytes for shape {shape} {dtype}")
        tensors[name] = (dtype, shape, data[start:end])
    return tensors, meta


def write_safetensors(path, tensors):
    header = collections.OrderedDict()
    offset = 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, raw in tensors.values():
            f.write(raw)


# ----------------------------------------------------------------------------------------
# name mapping and dtype conversion

def parse_rules(rules):
    out = []
    for rule in rules or []:
        if "=" not in rule:
            raise SystemExit(f"--rename {rule!r}: expected OLD=NEW")
        old, new = rule.split("=", 1)
        out.append((old, new))
    return out


def timm_vgg(name, shape):
    """timm VGG -> torchvision VGG (inverse of timm.models.vgg._filter_fn)."""
    if name.startswith("pre_logits.fc1."):
        name = "classifier.0." + name[len("pre_logits.fc1."):]
        if name.endswith(".weight") and len(shape) == 4:
            shape = [shape[0], shape[1] * shape[2] * shape[3]]
    elif name.startswith("pre_logits.fc2."):
        name = "classifier.3." + name[len("pre_logits.fc2."):]
        if name.endswith(".weight") and len(shape) == 4:
            shape = [shape[0], shape[1] * shape[2] * shape[3]]
    elif name.startswith("head.fc."):
        name = "classifier.6." + name[len("head.fc."):]
    return name, shape


def convert(dtype, raw, target):
    """Converts raw little-endian bytes between F32, F16 and BF16."""
    if target in (None, "keep") or target == dtype:
        return dtype, raw
    if {dtype, target} - {"F32", "F16", "BF16"}:
        raise SystemExit(f"cannot convert {dtype} to {target}")
    if dtype == "BF16":
        src = array.array("H", bytes(raw))
        if sys.byteorder != "little":
            src.byteswap()
        values = array.array("f", struct.unpack(f"<{len(src)}f", b"".join(
            struct.pack("<I", h << 16) for h in src)))
    else:
        code = DTYPES[dtype][2]
        values = struct.unpack(f"<{len(raw) // DTYPES[dtype][1]}{code}", bytes(raw))
    if target == "F32":
        return target, struct.pack(f"<{len(values)}f", *values)
    if target == "F16":
        return target, struct.pack(f"<{len(values)}e", *values)
    # BF16: round to nearest even from the F32 bit pattern
    bits = struct.unpack(f"<{len(values)}I", struct.pack(f"<{len(values)}f", *values))
    out = [((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF for b in bits]
    return target, struct.pack(f"<{len(out)}H", *out)


def map_tensors(tensors, rename=(), drop=(), timm=False, dtype=None):
    """Applies --timm-vgg, --drop, --rename and --dtype; returns the tensors to write."""
    out = collections.OrderedDict()
    for name, (dt, shape, raw) in tensors.items():
        if timm:
            name, shape = timm_vgg(name, shape)
        if any(name.startswith(p) for p in drop):
            continue
        for old, new in rename:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        if name in out:
            raise SystemExit(f"two tensors map to the name {name!r}")
        dt, raw = convert(dt, raw, dtype)
        out[name] = (dt, shape, raw)
    return out


# ----------------------------------------------------------------------------------------
# stand-ins for torch, so that pickle writes GLOBAL torch._utils _rebuild_tensor_v2 etc.

class _Storage:
    """One storage: pickled through Pickler.persistent_id, like torch's TypedStorage."""

    def __init__(self, storage_cls, key, numel, legacy):
        self.storage_cls, self.key, self.numel, self.legacy = storage_cls, key, numel, legacy

    def persistent_id(self):
        pid = ("storage", self.storage_cls, self.key, "cpu", self.numel)
        return pid + (None,) if self.legacy else pid  # legacy: view_metadata


def _row_major(shape):
    stride, acc = [], 1
    for d in reversed(shape):
        stride.append(acc)
        acc *= d
    return tuple(reversed(stride))


def _to_channels_last(raw, size, shape):
    """The bytes of an (N, C, H, W) row-major tensor laid out N, H, W, C, and the strides
    that view them as (N, C, H, W)."""
    n, c, h, w = shape
    out = bytearray(len(raw))
    src = bytes(raw)
    for i in range(n * c * h * w):
        ni, ci, hi, wi = i // (c * h * w), i // (h * w) % c, i // w % h, i % w
        j = ((ni * h + hi) * w + wi) * c + ci
        out[j * size:(j + 1) * size] = src[i * size:(i + 1) * size]
    return bytes(out), (c * h * w, 1, w * c, c)


class _Tensor:
    def __init__(self, fake, storage, shape, rebuild, offset=0, strides=None):
        self.fake, self.storage, self.shape, self.rebuild = fake, storage, tuple(shape), rebuild
        self.offset = offset
        self.strides = tuple(strides) if strides else _row_major(self.shape)

    def stride(self):
        return self.strides

    def old_style(self):
        """torch <= 0.1.10: a torch.FloatTensor instance pickled by object.__reduce_ex__(2),
        i.e. copyreg.__newobj__ (NEWOBJ) plus BUILD with Tensor.__getstate__()."""
        cls = getattr(self.fake["torch"], self.storage.storage_cls.__qualname__.replace(
            "Storage", "Tensor"))
        old = cls.__new__(cls)
        old._state = (self.storage, self.offset, self.shape, self.stride())
        return old

    def __reduce_ex__(self, protocol):
        u = self.fake["torch._utils"]
        if self.rebuild == "v1":  # torch 0.1.11-0.3 Tensor.__reduce__
            return u._rebuild_tensor, (self.storage, self.offset, self.shape, self.stride())
        # torch >= 0.4 Tensor._reduce_ex_internal; backward_hooks is a fresh OrderedDict()
        return u._rebuild_tensor_v2, (self.storage, self.offset, self.shape, self.stride(), False,
                                      collections.OrderedDict())


class _Parameter:
    def __init__(self, fake, tensor):
        self.fake, self.tensor = fake, tensor

    def __reduce_ex__(self, protocol):  # torch.nn.Parameter.__reduce_ex__
        return (self.fake["torch._utils"]._rebuild_parameter,
                (self.tensor, True, collections.OrderedDict()))


def _fake_torch():
    """Module objects `torch` and `torch._utils` holding stand-ins whose __module__ and
    __qualname__ make pickle write GLOBAL 'torch._utils\n_rebuild_tensor_v2',
    'torch\nFloatStorage' and so on."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    torch._utils = utils
    for name in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter"):
        def fn(*args, _name=name):
            raise RuntimeError(f"stand-in torch._utils.{_name} is not callable")
        fn.__module__, fn.__name__, fn.__qualname__ = "torch._utils", name, name
        setattr(utils, name, fn)
    for storage, _, _ in DTYPES.values():
        setattr(torch, storage, type(storage, (), {"__module__": "torch", "__qualname__": storage}))
        tensor = storage.replace("Storage", "Tensor")
        setattr(torch, tensor, type(tensor, (), {"__module__": "torch", "__qualname__": tensor,
                                                 "__getstate__": lambda self: self._state}))
    return {"torch": torch, "torch._utils": utils}


@contextlib.contextmanager
def _installed(fake):
    """Puts the stand-in modules in sys.modules while pickling (pickle checks that a GLOBAL
    resolves to the very object it writes), restoring whatever was there."""
    saved = {name: sys.modules.get(name) for name in fake}
    sys.modules.update(fake)
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return obj.persistent_id()
        return None


def _module_metadata(names):
    """torch's state_dict()._metadata: {'': {'version': 1}, 'features': ..., 'features.0': ...}
    in module order; BatchNorm (running_mean present) is version 2."""
    meta = collections.OrderedDict([("", {"version": 1})])
    bn = {n.rsplit(".", 1)[0] for n in names if n.endswith(".running_mean")}
    for name in names:
        parts = name.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix not in meta:
                meta[prefix] = {"version": 2 if prefix in bn else 1}
    return meta


def state_dict_pickle(tensors, legacy=False, rebuild="v2", metadata=True, key_base=0,
                      channels_last=False, shared=False, wrap=None):
    """Pickles the state dict as torch does; returns (pickle bytes, {key: (raw bytes,
    element size)})."""
    fake = _fake_torch()
    state = collections.OrderedDict()
    storages = collections.OrderedDict()  # key -> (bytearray, element size, storage class)
    views = []  # (name, key, offset, shape, strides)
    for name, (dtype, shape, raw) in tensors.items():
        storage_name, size, _ = DTYPES[dtype]
        strides = None
        if channels_last and len(shape) == 4:
            raw, strides = _to_channels_last(raw, size, shape)
        # zip: id_map keys str(len(id_map)); legacy: str(storage._cdata), a pointer value
        index = [k for k, v in storages.items() if v[2] == storage_name] if shared else []
        key = index[0] if index else (str(key_base + 4096 * len(storages)) if legacy
                                      else str(len(storages)))
        data = storages.setdefault(key, (bytearray(), size, storage_name))[0]
        views.append((name, key, len(data) // size, shape, strides))
        data += bytes(raw)
    objects = {key: _Storage(getattr(fake["torch"], cls), key, len(data) // size, legacy)
               for key, (data, size, cls) in storages.items()}
    for name, key, offset, shape, strides in views:
        t = _Tensor(fake, objects[key], shape, rebuild, offset, strides)
        state[name] = (_Parameter(fake, t) if rebuild == "parameter" else
                       t.old_style() if rebuild == "v0" else t)
    if metadata:
        state._metadata = _module_metadata(list(tensors))
    obj = {wrap: state, "epoch": 3} if wrap else state
    buf = io.BytesIO()
    with _installed(fake):
        _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue(), {k: (bytes(d), size) for k, (d, size, _) in storages.items()}


# ----------------------------------------------------------------------------------------
# writers

def _serialization_id(records):
    h = hashlib.sha256()
    for name, data in records:
        h.update(name.encode())
        h.update(hashlib.sha256(data).digest())
    a, b = struct.unpack("<QQ", h.digest()[:16])
    return f"{a:020d}{b:020d}".encode()


class _TorchZipWriter:
    """A zip writer that lays records out as torch's PyTorchStreamWriter (miniz) does, byte for
    byte: local headers with version 0, flags 0x0808 (data descriptor + UTF-8), time/date 0,
    CRC and sizes 0; an 'FB' extra field padded with 'Z' so that each record's data starts at
    a multiple of 64 (caffe2::serialize::detail::getPadding); the data; a data descriptor
    (PK\\x07\\x08, CRC-32, sizes); then central directory entries without extra fields, a zip64
    end-of-central-directory record and locator (miniz runs with MZ_ZIP_FLAG_WRITE_ZIP64) and
    the classic end record. Records past 4 GiB (zip64 entries) are not supported: no model
    this script is meant for comes near that."""

    def __init__(self, f):
        self.f, self.entries = f, []

    def write(self, name, data):
        name_b = name.encode()
        cursor = self.f.tell()
        if cursor + len(data) + 1024 >= 0xFFFFFFFF:
            raise SystemExit("output past 4 GiB: zip64 records are not implemented")
        start = cursor + 30 + len(name_b) + 4
        pad = -start % ALIGNMENT
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        self.f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, 0x0808, 0, 0, 0, 0, 0, 0,
                                 len(name_b), len(extra)) + name_b + extra)
        self.f.write(data)
        crc = zlib.crc32(data)
        self.f.write(struct.pack("<IIII", 0x08074B50, crc, len(data), len(data)))
        self.entries.append((name_b, crc, len(data), cursor))

    def close(self):
        cd_start = self.f.tell()
        for name_b, crc, size, offset in self.entries:
            self.f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, 0x0808, 0, 0, 0, crc,
                                     size, size, len(name_b), 0, 0, 0, 0, 0, offset) + name_b)
        cd_size = self.f.tell() - cd_start
        n = len(self.entries)
        zip64_at = self.f.tell()
        self.f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x2D, 0, 0, n, n,
                                 cd_size, cd_start))
        self.f.write(struct.pack("<IIQI", 0x07064B50, 0, zip64_at, 1))
        self.f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_start, 0))


def write_zip(path, tensors, archive=None, rebuild="v2", metadata=True, layout="2.x", **storage):
    if archive is None:
        base = os.path.basename(path)
        archive = base[:base.rfind(".")] if "." in base else base
    pkl, storages = state_dict_pickle(tensors, rebuild=rebuild, metadata=metadata, **storage)
    records = [("data.pkl", pkl)]
    if layout != "1.x":
        records.append(("byteorder", b"little"))
    for key in sorted(storages):
        records.append((f"data/{key}", storages[key][0]))
    records.append(("version", b"3\n"))
    if layout != "1.x":
        records.append((".data/serialization_id", _serialization_id(records)))
    with open(path, "wb") as f:
        z = _TorchZipWriter(f)
        for name, data in records:
            z.write(f"{archive}/{name}", data)
        z.close()
    return archive


def write_legacy(path, tensors, rebuild="v2", metadata=True, **storage):
    pkl, storages = state_dict_pickle(tensors, legacy=True, rebuild=rebuild, metadata=metadata,
                                      key_base=94000000000000, **storage)
    sys_info = dict(protocol_version=PROTOCOL_VERSION, little_endian=True,
                    type_sizes=dict(short=2, int=4, long=4))  # struct "=l" is 4
    keys = sorted(storages)
    with open(path, "wb") as f:
        pickle.dump(MAGIC_NUMBER, f, protocol=2)
        pickle.dump(PROTOCOL_VERSION, f, protocol=2)
        pickle.dump(sys_info, f, protocol=2)
        f.write(pkl)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            data, size = storages[key]
            f.write(struct.pack("<q", len(data) // size))
            f.write(data)


# ----------------------------------------------------------------------------------------
# readers used by the check

class _Ref:
    def __init__(self, kind, args):
        self.kind, self.args = kind, args


class _StorageType:
    def __init__(self, name):
        self.name = name


class _OldTensor:
    """torch <= 0.1.10 tensors: NEWOBJ torch.FloatTensor, then BUILD (storage, offset, size,
    stride), which Tensor.__setstate__ passed to set_()."""

    def __setstate__(self, state):
        self.kind, self.args = "v0", tuple(state)


class _StandInUnpickler(pickle.Unpickler):
    """torch.load's view of the pickle, with stand-ins instead of torch."""

    def __init__(self, f, allowed):
        super().__init__(f)
        self.allowed = allowed

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in self.allowed:
            return lambda *args: _Ref(name, args)
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "torch" and name.endswith("Tensor") and "v0" in self.allowed:
            return _OldTensor
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        if pid[0] != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return pid


def _tensor_view(obj):
    """(storage pid, offset, size, stride) of a rebuilt tensor stand-in."""
    if obj.kind == "_rebuild_parameter":
        obj = obj.args[0]
    pid, offset, size, stride = obj.args[:4]
    return pid, offset, tuple(size), tuple(stride)


def candle_model(pkl, dir_name, key=None):
    """A Python model of candle-core 0.11.1 pickle.rs: Stack::read_loop (only its opcodes;
    REDUCE of collections.OrderedDict -> empty Dict; BUILD of Dict+Dict appends), then
    read_pth_tensor_info's dict walk, Object::into_tensor_info and rebuild_args. Returns
    {name: (path, storage class, offset, size, stride, storage_size)}; raises where candle
    would fail, skips (like candle) what it skips. `key` is read_pth_tensor_info's key (the
    wrapper key under which the state dict is)."""
    ops = list(pickletools.genops(pkl))
    bad = sorted({op.name for op, _, _ in ops} - CANDLE_OPCODES)
    if bad:
        raise ValueError(f"opcodes candle 0.11 does not know: {bad}")
    stack, memo = [], {}
    MARK = object()

    def pop_mark():
        i = len(stack) - 1
        while stack[i] is not MARK:
            i -= 1
        items = stack[i + 1:]
        del stack[i:]
        return items

    for op, arg, _ in ops:
        n = op.name
        if n == "PROTO":
            continue
        if n == "STOP":
            break
        if n == "GLOBAL":
            module, name = arg.split(" ", 1)
            stack.append(("class", module, name))
        elif n in ("BINPUT", "LONG_BINPUT"):
            memo[arg] = copy.deepcopy(stack[-1])  # candle memo_put clones the object
        elif n in ("BINGET", "LONG_BINGET"):
            stack.append(copy.deepcopy(memo[arg]))
        elif n == "EMPTY_TUPLE":
            stack.append(("tuple", []))
        elif n == "MARK":
            stack.append(MARK)
        elif n == "TUPLE":
            stack.append(("tuple", pop_mark()))
        elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
            k = int(n[-1])
            items = stack[-k:]
            del stack[-k:]
            stack.append(("tuple", items))
        elif n in ("BININT", "BININT1", "BININT2"):
            stack.append(("int", arg))
        elif n == "LONG1":
            stack.append(("long", arg))
        elif n == "BINUNICODE":
            stack.append(("str", arg))
        elif n in ("NEWTRUE", "NEWFALSE"):
            stack.append(("bool", n == "NEWTRUE"))
        elif n == "NONE":
            stack.append(("none",))
        elif n == "BINFLOAT":
            stack.append(("float", arg))
        elif n == "BINPERSID":
            stack.append(("persid", stack.pop()))
        elif n in ("REDUCE", "NEWOBJ"):
            args, fn = stack.pop(), stack.pop()
            if n == "REDUCE" and fn[0] == "class" and fn[1] == "collections" and \
                    fn[2] in ("OrderedDict", "defaultdict"):
                stack.append(("dict", []))
            else:
                stack.append(("reduce", fn, args))
        elif n in ("EMPTY_DICT", "DICT"):  # candle maps b'd' to EmptyDict too
            stack.append(("dict", []))
        elif n == "EMPTY_LIST":
            stack.append(("list", []))
        elif n == "SETITEM":
            v, k = stack.pop(), stack.pop()
            stack[-1][1].append((k, v))
        elif n == "SETITEMS":
            items = pop_mark()
            target = stack[-1]
            if target[0] != "dict":
                raise ValueError(f"setitems on {target[0]}")
            while items:  # candle pops from the end: pairs land in reverse order
                v, k = items.pop(), items.pop()
                target[1].append((k, v))
        elif n in ("APPEND", "APPENDS"):
            items = [stack.pop()] if n == "APPEND" else pop_mark()
            stack[-1][1].extend(items)
        elif n == "BUILD":
            args, obj = stack.pop(), stack.pop()
            if obj[0] == "dict" and args[0] == "dict":
                stack.append(("dict", obj[1] + args[1]))
            else:
                stack.append(("build", obj, args))
        else:
            raise ValueError(f"unmodelled opcode {n}")
    obj = stack.pop()
    if obj[0] != "dict":
        raise ValueError(f"top-level object is {obj[0]}, not a dict")
    if key is not None:
        obj = next((v for k, v in obj[1] if k == ("str", key)), None)
        if obj is None:
            raise ValueError(f"key {key} not found")
    out = {}
    for name, value in obj[1]:
        if name[0] != "str" or value[0] != "reduce":
            continue  # into_tensor_info -> Ok(None), e.g. the _metadata entry
        fn, args = value[1], value[2]
        if fn[:3] == ("class", "torch._utils", "_rebuild_parameter"):
            inner = args[1][0]
            if inner[0] != "reduce":
                raise ValueError(f"{name[1]}: _rebuild_parameter of {inner[0]}")
            fn, args = inner[1], inner[2]
        if fn[:3] != ("class", "torch._utils", "_rebuild_tensor_v2"):
            continue  # candle skips anything else silently, e.g. v1 _rebuild_tensor
        a = list(args[1])

        def usize_tuple(o):
            if o[0] != "tuple" or any(x[0] != "int" or x[1] < 0 for x in o[1]):
                raise ValueError(f"{name[1]}: size/stride {o} is not a tuple of Int")
            return tuple(x[1] for x in o[1])

        stride, size = usize_tuple(a[3]), usize_tuple(a[2])
        if a[1][0] not in ("int", "long"):
            raise ValueError(f"{name[1]}: storage offset {a[1]}")
        offset = a[1][1]
        if a[0][0] != "persid" or a[0][1][0] != "tuple":
            raise ValueError(f"{name[1]}: storage is not a persistent id tuple")
        pid = a[0][1][1]
        if pid[4][0] not in ("int", "long") or pid[2][0] != "str" or pid[1][0] != "class":
            raise ValueError(f"{name[1]}: persistent id {pid}")
        storage_cls = pid[1][2]
        if storage_cls not in CANDLE_STORAGES:
            raise ValueError(f"{name[1]}: unsupported storage type {storage_cls}")
        out[name[1]] = (f"{dir_name}/{pid[2][1]}", storage_cls, offset, size, stride, pid[4][1])
    return out


def _contiguous(size, stride):
    acc = 1
    for d, s in zip(reversed(size), reversed(stride)):
        if d != 1 and s != acc:
            return False
        acc *= d
    return True


def _gather(blob, esize, offset, size, stride):
    """The row-major bytes of the strided view (offset, size, stride) of a storage."""
    index = [offset]
    for n, step in zip(size, stride):
        index = [i + k * step for i in index for k in range(n)]
    return b"".join(blob[i * esize:(i + 1) * esize] for i in index)


def check(path, expected, rebuild="v2", log=print, wrap=None):
    """Reads `path` back and compares every tensor with `expected` (the mapped tensors; under
    the key `wrap` if given). Zip files are also checked the way candle-core 0.11 reads them.
    Returns a summary dict."""
    with open(path, "rb") as f:
        head = f.read(4)
    allowed = {"_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter", "v0"}
    summary = {"file": path, "tensors": len(expected)}
    if head == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pkls = [n for n in names if n.endswith("data.pkl")]  # candle: ends_with("data.pkl")
            if len(pkls) != 1:
                raise AssertionError(f"{len(pkls)} data.pkl entries: {pkls}")
            archive = pkls[0][:-len("/data.pkl")]
            for info in z.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    raise AssertionError(f"{info.filename} is compressed")
                if not info.filename.startswith(archive + "/"):
                    raise AssertionError(f"{info.filename} is outside {archive}/")
            with open(path, "rb") as f:
                for info in z.infolist():
                    f.seek(info.header_offset)
                    hdr = f.read(30)
                    n_name, n_extra = struct.unpack("<HH", hdr[26:30])
                    data_at = info.header_offset + 30 + n_name + n_extra
                    if info.filename.split("/", 1)[1].startswith("data/") and data_at % ALIGNMENT:
                        raise AssertionError(f"{info.filename} data at {data_at}, not 64-aligned")
            version = z.read(f"{archive}/version")
            if version != b"3\n":
                raise AssertionError(f"version record {version!r}")
            pkl = z.read(pkls[0])
            dir_name = pkls[0][:-len(".pkl")]  # candle: strip_suffix(".pkl") -> ARCHIVE/data
            state = _StandInUnpickler(io.BytesIO(pkl), allowed).load()
            state = state[wrap] if wrap else state
            raw = {}
            for name, t in state.items():
                pid, offset, size, stride = _tensor_view(t)
                raw[name] = (pid, offset, size, stride, z.read(f"{dir_name}/{pid[2]}"))
            candle = candle_model(pkl, dir_name, wrap)
            summary.update(format="zip", archive=archive, records=names)
            if rebuild not in ("v0", "v1"):
                refused = 0
                if set(candle) != set(expected):
                    raise AssertionError(f"candle model sees {sorted(set(candle) ^ set(expected))}")
                for name, (cpath, cls, offset, size, stride, numel) in candle.items():
                    dtype, shape, data = expected[name]
                    esize = DTYPES[dtype][1]
                    if cls != DTYPES[dtype][0] or list(size) != list(shape):
                        raise AssertionError(f"candle model: {name} is {cls} {size}")
                    if cpath not in names:
                        raise AssertionError(f"candle model: {name}: no record {cpath}")
                    if not (_contiguous(size, stride) or _contiguous(size[::-1], stride[::-1])):
                        refused += 1  # PthTensors::get: "cannot retrieve non-contiguous tensors"
                        continue
                    blob = z.read(cpath)
                    if len(blob) != numel * esize:
                        raise AssertionError(f"candle model: {name}: storage_size mismatch")
                    if _gather(blob, esize, offset, size, stride) != bytes(data):
                        raise AssertionError(f"candle model: {name}: bytes differ")
                summary["candle_model"] = f"{len(candle) - refused} tensors read, bytes equal" + (
                    f"; {refused} with permuted strides, which candle 0.11 refuses" if refused else "")
            else:
                if candle:
                    raise AssertionError(f"candle model unexpectedly read {len(candle)} tensors")
                summary["candle_model"] = (f"0 tensors: candle 0.11 skips {rebuild} tensors "
                                           "(not _rebuild_tensor_v2) without an error")
    else:
        with open(path, "rb") as f:
            if pickle.load(f) != MAGIC_NUMBER:
                raise AssertionError("not a torch checkpoint: bad magic number")
            if pickle.load(f) != PROTOCOL_VERSION:
                raise AssertionError("unexpected legacy protocol version")
            sys_info = pickle.load(f)
            if not sys_info.get("little_endian"):
                raise AssertionError("big-endian legacy file")
            state = _StandInUnpickler(f, allowed).load()
            state = state[wrap] if wrap else state
            keys = pickle.load(f)
            sizes = {}
            for t in state.values():
                pid = _tensor_view(t)[0]
                sizes[pid[2]] = DTYPES[STORAGE_DTYPE[pid[1].name]][1]
            blobs = {}
            for key in keys:
                (numel,) = struct.unpack("<q", f.read(8))
                blobs[key] = f.read(numel * sizes[key])
            if f.read(1):
                raise AssertionError("trailing bytes after the last storage")
        raw = {}
        for name, t in state.items():
            pid, offset, size, stride = _tensor_view(t)
            raw[name] = (pid, offset, size, stride, blobs[pid[2]])
        summary.update(format="legacy", storages=len(keys))
    # torch.load's view (stdlib pickle with stand-ins), for both formats
    if list(raw) != list(expected):
        missing = sorted(set(expected) ^ set(raw))
        raise AssertionError(f"tensor names differ: {missing[:5]}")
    for name, (pid, offset, size, stride, blob) in raw.items():
        dtype, shape, data = expected[name]
        esize = DTYPES[dtype][1]
        if pid[1].name != DTYPES[dtype][0] or list(size) != list(shape):
            raise AssertionError(f"{name}: {pid[1].name} {size}, expected {dtype} {shape}")
        if pid[4] * esize != len(blob):
            raise AssertionError(f"{name}: storage numel mismatch")
        if _gather(blob, esize, offset, size, stride) != bytes(data):
            raise AssertionError(f"{name}: bytes differ")
    summary["pickle_view"] = f"{len(raw)} tensors, names, dtypes, shapes and bytes equal"
    log(f"check ok: {path}: {summary['format']}, {summary['pickle_view']}"
        + (f"; candle model: {summary['candle_model']}" if "candle_model" in summary else ""))
    return summary


def state_pickle_bytes(path):
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("data.pkl"))
            return z.read(name)
    with open(path, "rb") as f:
        for _ in range(3):
            pickle.load(f)
        start = f.tell()
        _StandInUnpickler(f, {"_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter",
                              "v0"}).load()
        end = f.tell()
        f.seek(start)
        return f.read(end - start)


# ----------------------------------------------------------------------------------------

def self_test():
    rng = random.Random(15)

    def tensor(dtype, shape):
        n = 1
        for d in shape:
            n *= d
        if dtype == "F32":
            return struct.pack(f"<{n}f", *(rng.uniform(-1, 1) for _ in range(n)))
        if dtype == "F16":
            return struct.pack(f"<{n}e", *(rng.uniform(-1, 1) for _ in range(n)))
        if dtype == "I64":
            return struct.pack(f"<{n}q", *(rng.randrange(-5, 5) for _ in range(n)))
        raise ValueError(dtype)

    spec = [
        ("features.0.weight", "F32", [8, 3, 3, 3]), ("features.0.bias", "F32", [8]),
        ("features.2.weight", "F32", [8, 8, 3, 3]), ("features.2.bias", "F32", [8]),
        ("features.10.weight", "F32", [4, 8, 3, 3]), ("features.10.bias", "F32", [4]),
        ("conv1.bn.running_mean", "F32", [8]), ("conv1.bn.running_var", "F32", [8]),
        ("conv1.bn.num_batches_tracked", "I64", []),
        ("pre_logits.fc1.weight", "F32", [16, 4, 2, 2]), ("pre_logits.fc1.bias", "F32", [16]),
        ("head.fc.weight", "F16", [5, 16]), ("head.fc.bias", "F16", [5]),
    ]
    src = collections.OrderedDict((n, (d, s, tensor(d, s))) for n, d, s in spec)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        st = os.path.join(tmp, "in.safetensors")
        write_safetensors(st, src)
        tensors, _ = read_safetensors(st)
        variants = [
            ("zip v2", dict()),
            ("zip torch-1.x layout", dict(layout="1.x")),
            ("zip parameter", dict(rebuild="parameter")),
            ("zip v1 (candle skips)", dict(rebuild="v1", metadata=False)),
            ("zip archive/", dict(archive="archive")),
            ("legacy v2", dict(legacy=True)),
            ("legacy v1 (2017)", dict(legacy=True, rebuild="v1", metadata=False)),
            ("legacy v0 (torch 0.1.10)", dict(legacy=True, rebuild="v0", metadata=False)),
            ("zip channels-last", dict(channels_last=True)),
            ("zip shared storage", dict(shared=True)),
            ("zip wrapped", dict(wrap="state_dict")),
            ("legacy channels-last", dict(legacy=True, channels_last=True)),
            ("legacy v1 shared storage", dict(legacy=True, rebuild="v1", metadata=False, shared=True)),
            ("legacy v0 channels-last", dict(legacy=True, rebuild="v0", metadata=False,
                                             channels_last=True)),
            ("legacy wrapped", dict(legacy=True, wrap="model")),
        ]
        for label, kw in variants:
            for mapping in ({}, {"timm": True, "rename": [("features.", "feat.")],
                                 "drop": ["conv1."], "dtype": "F32"}):
                mapped = map_tensors(tensors, **mapping)
                out = os.path.join(tmp, "model-1234abcd.pth")
                storage = {k: kw[k] for k in ("channels_last", "shared", "wrap") if k in kw}
                if kw.get("legacy"):
                    write_legacy(out, mapped, kw.get("rebuild", "v2"), kw.get("metadata", True),
                                 **storage)
                else:
                    write_zip(out, mapped, kw.get("archive"), kw.get("rebuild", "v2"),
                              kw.get("metadata", True), kw.get("layout", "2.x"), **storage)
                s = check(out, mapped, kw.get("rebuild", "v2"), log=lambda *_: None,
                          wrap=kw.get("wrap"))
                if mapping:
                    assert "classifier.0.weight" in mapped and mapped["classifier.0.weight"][1] == [16, 16]
                    assert mapped["classifier.6.weight"][0] == "F32" and "feat.0.weight" in mapped
                results.append(f"{label}{' +mapping' if mapping else ''}: ok "
                               f"({s['format']}, {s.get('archive', '-')}"
                               + (f"; candle model: {s['candle_model']}" if "candle_model" in s
                                  else "") + ")")
        # Byte-identity with real torch: torch 1.12.1's
        #   torch.save(OrderedDict([("features.0.weight", torch.arange(18.).reshape(2, 1, 3, 3)),
        #                           ("features.0.bias", torch.tensor([0.5, -0.5]))]), "x.pth")
        # wrote a file with this sha256 (archive/ prefix, no byteorder, no _metadata).
        real = collections.OrderedDict([
            ("features.0.weight", ("F32", [2, 1, 3, 3], struct.pack("<18f", *range(18)))),
            ("features.0.bias", ("F32", [2], struct.pack("<2f", 0.5, -0.5)))])
        out = os.path.join(tmp, "x.pth")
        write_zip(out, real, "archive", "v2", False, "1.x")
        with open(out, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != TORCH_1_12_1_SHA256:
            raise AssertionError(f"not byte-identical to torch 1.12.1's file: sha256 {digest}")
        results.append("zip byte-identical to torch 1.12.1 torch.save: ok")
    for r in results:
        print(r)
    print(f"{len(results)} passed, 0 failed")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("input", nargs="?")
    p.add_argument("output", nargs="?")
    p.add_argument("--rename", action="append", metavar="OLD=NEW")
    p.add_argument("--drop", action="append", default=[], metavar="PREFIX")
    p.add_argument("--timm-vgg", action="store_true")
    p.add_argument("--dtype", choices=["keep", "F32", "F16", "BF16"], default="keep")
    p.add_argument("--legacy", action="store_true")
    p.add_argument("--rebuild", choices=["v2", "v1", "v0", "parameter"], default="v2")
    p.add_argument("--archive-name")
    p.add_argument("--torch-layout", choices=["2.x", "1.x"], default="2.x")
    p.add_argument("--no-metadata", action="store_true")
    p.add_argument("--no-check", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--shared-storage", action="store_true")
    p.add_argument("--wrap", metavar="KEY")
    p.add_argument("--check", nargs=2, metavar=("PTH", "SAFETENSORS"))
    p.add_argument("--self-test", action="store_true")
    p.add_argument("--dis", metavar="PTH")
    a = p.parse_args(argv)
    if a.self_test:
        return self_test()
    if a.dis:
        pickletools.dis(state_pickle_bytes(a.dis))
        return
    metadata = not a.no_metadata and a.rebuild not in ("v0", "v1")
    storage = dict(channels_last=a.channels_last, shared=a.shared_storage, wrap=a.wrap)
    if a.check:
        tensors, _ = read_safetensors(a.check[1])
        mapped = map_tensors(tensors, parse_rules(a.rename), a.drop, a.timm_vgg, a.dtype)
        try:
            check(a.check[0], mapped, a.rebuild, wrap=a.wrap)
        except (AssertionError, ValueError, KeyError, pickle.UnpicklingError) as e:
            raise SystemExit(f"check FAILED: {a.check[0]}: {e}")
        return
    if not a.input or not a.output:
        p.error("IN.safetensors and OUT.pth are required")
    tensors, _ = read_safetensors(a.input)
    mapped = map_tensors(tensors, parse_rules(a.rename), a.drop, a.timm_vgg, a.dtype)
    tmp = a.output + ".tmp"
    if a.legacy:
        write_legacy(tmp, mapped, a.rebuild, metadata, **storage)
        where = "legacy format"
    else:
        archive = a.archive_name
        if archive is None:
            base = os.path.basename(a.output)
            archive = base[:base.rfind(".")] if "." in base else base
        write_zip(tmp, mapped, archive, a.rebuild, metadata, a.torch_layout, **storage)
        where = f"zip, {archive}/data.pkl"
    if not a.no_check:
        try:
            check(tmp, mapped, a.rebuild, log=lambda *_: None, wrap=a.wrap)
        except (AssertionError, ValueError, KeyError, pickle.UnpicklingError) as e:
            os.remove(tmp)
            raise SystemExit(f"check FAILED on the written file, not kept: {e}")
    os.replace(tmp, a.output)
    h = hashlib.sha256()
    with open(a.output, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    print(f"wrote {a.output} ({where}, {len(mapped)} tensors{', checked' if not a.no_check else ''}); "
          f"sha256 {h.hexdigest()} (torch hub name: <name>-{h.hexdigest()[:8]}.pth)")


if __name__ == "__main__":
    main()
