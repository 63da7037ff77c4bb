#!/usr/bin/env python3
"""Seeded, time-bounded fuzz campaign for the dreamvid binary (see scripts/fuzz for the options).

Standard library only. Every case is a pure function of (SEED, case number) and the seed
inputs made at the start, so `SEED=s CASE=n scripts/fuzz` replays case n of a campaign.

Kinds of input and what is done to them:
  image        PNGs (assets/chelsea.png as is, and small copies of it as RGB, RGBA, grey,
               grey+alpha, 16-bit and palette PNGs) and the repository's JPEGs: flipped bits,
               overwritten byte runs, truncation, appended garbage, PNG IHDR fields (size, bit
               depth, colour type, methods; CRC fixed or not), broken CRCs, chunk lengths,
               dropped/duplicated/unknown chunks, corrupt IDAT, odd but valid re-encodings
               (1x1 and other tiny sizes, every colour type, every filter), JPEG SOF fields
               (size, precision, components, sampling, process), DQT/DHT/SOS/DRI fields,
               segment lengths, EXIF orientation (valid and broken), wrong extensions, the
               output path equal to / a hard link of the input, a stale file at the output.
  video        an MP4 and an MKV from examples/make_clip (64x48 and 63x47, 6 frames, audio):
               corrupt packets (byte runs overwritten in the middle), flipped bits, truncation,
               MP4 box fields and sizes, dropped boxes (e.g. the video track), MKV element
               values and sizes, dropped elements, splices, zero length, wrong extensions (a
               video named .png for `image`, a PNG/JPEG named .mp4 for the video command).
  preset       the shipped presets/*.toml: random insert/delete/truncate, wrong types, huge
               numbers, NaN/inf, unknown keys and tables, duplicate keys, odd keyframes,
               invalid UTF-8; run with --preset on `image` (and on the video command).
  safetensors  the fixture VGG19 (torchvision `features` layout, widths 4..8): truncation,
               header length field (0, too small, too big, negative as i64, huge), broken
               header JSON, deep nesting, out-of-range/overlapping/reversed offsets, NaN/inf
               weights, wrong shapes/ranks/kernel sizes, zero channels, missing/extra tensors,
               wrong dtypes (relabelled or re-encoded), odd __metadata__, misaligned data.
  pth          the same weights as PyTorch checkpoints (scripts/write_pth.py: zip as torch 2.x
               and 1.x write it, legacy with each tensor rebuild torch ever pickled,
               channels-last and shared storages): truncation, bit flips, pickle opcodes
               changed, inserted or deleted, storage records cut short or missing, records
               compressed or renamed (outside the archive too), legacy storage counts, and
               hostile pickles (os.system/eval REDUCEs, deep nesting, memo bombs, huge sizes).
"""

import array
import hashlib
import json
import math
import os
import random
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KINDS_ALL = ["image", "video", "preset", "safetensors", "pth"]

# torchvision VGG19 `features`: convolutions per block, each followed by ReLU; a pool per block.
VGG_BLOCKS = [2, 2, 4, 4, 4]
FIXTURE_VGG_WIDTHS = [4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]
DREAM_ARGS = ["--model", "vgg19", "--layer", "20", "--octaves", "1", "--iterations", "1"]


def env_int(name, default):
    v = os.environ.get(name, "").strip()
    if v == "":
        return default
    try:
        return int(float(v))
    except ValueError:
        sys.exit(f"error: {name}={v!r} is not a number")


def env_float(name, default):
    v = os.environ.get(name, "").strip()
    if v == "":
        return default
    try:
        return float(v)
    except ValueError:
        sys.exit(f"error: {name}={v!r} is not a number")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# PNG


def png_chunk(ctype, body, crc=None):
    if crc is None:
        crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def png_chunks(data):
    """[(type, body, offset)] of a PNG, tolerant of junk at the end."""
    out, i = [], 8
    while i + 8 <= len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        ctype = data[i + 4 : i + 8]
        if i + 12 + n > len(data):
            break
        out.append((ctype, data[i + 8 : i + 8 + n], i))
        i += 12 + n
    return out


def png_build(chunks):
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(t, b) for t, b in chunks)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_decode_rgb8(data):
    """Pixels of an 8-bit RGB or RGBA, non-interlaced PNG as (w, h, channels, bytearray)."""
    chunks = png_chunks(data)
    ihdr = next(b for t, b, _ in chunks if t == b"IHDR")
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError("only 8-bit RGB/RGBA non-interlaced PNGs")
    ch = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(b for t, b, _ in chunks if t == b"IDAT"))
    stride = w * ch
    out = bytearray(h * stride)
    prev = bytearray(stride)
    pos = 0
    for y in range(h):
        f = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        for x in range(stride):
            a = line[x - ch] if x >= ch else 0
            b = prev[x]
            c = prev[x - ch] if x >= ch else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + ((a + b) >> 1)) & 255
            elif f == 4:
                line[x] = (line[x] + paeth(a, b, c)) & 255
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return w, h, ch, out


def png_encode(w, h, ctype, depth, rows, palette=None, filters=None, trns=None):
    """A PNG from unfiltered rows (bytes per row as the colour type and depth need)."""
    bpp = max(1, {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype] * depth // 8)
    raw = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for y, row in enumerate(rows):
        f = filters[y % len(filters)] if filters else 0
        line = bytearray(len(row))
        for x in range(len(row)):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = (0, a, b, (a + b) >> 1, paeth(a, b, c))[f]
            line[x] = (row[x] - pred) & 255
        raw.append(f)
        raw += line
        prev = row
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))]
    if palette is not None:
        chunks.append((b"PLTE", bytes(palette)))
    if trns is not None:
        chunks.append((b"tRNS", bytes(trns)))
    chunks.append((b"IDAT", zlib.compress(bytes(raw), 6)))
    chunks.append((b"IEND", b""))
    return png_build(chunks)


class Picture:
    """An 8-bit RGB picture, for making valid PNG variants."""

    def __init__(self, w, h, rgb):
        self.w, self.h, self.rgb = w, h, rgb

    @classmethod
    def from_png(cls, data):
        w, h, ch, px = png_decode_rgb8(data)
        rgb = bytearray(w * h * 3)
        for i in range(w * h):
            rgb[3 * i : 3 * i + 3] = px[ch * i : ch * i + 3]
        return cls(w, h, rgb)

    def resized(self, w, h):
        out = bytearray(w * h * 3)
        for y in range(h):
            sy = min(self.h - 1, y * self.h // h)
            for x in range(w):
                sx = min(self.w - 1, x * self.w // w)
                s = 3 * (sy * self.w + sx)
                out[3 * (y * w + x) : 3 * (y * w + x) + 3] = self.rgb[s : s + 3]
        return Picture(w, h, out)

    def encode(self, variant, filters=None):
        w, h, rgb = self.w, self.h, self.rgb

        def px(x, y):
            i = 3 * (y * w + x)
            return rgb[i], rgb[i + 1], rgb[i + 2]

        rows = []
        palette = None
        trns = None
        if variant == "rgb8":
            rows = [bytes(rgb[3 * y * w : 3 * (y + 1) * w]) for y in range(h)]
            return png_encode(w, h, 2, 8, rows, filters=filters)
        if variant == "rgba8":
            for y in range(h):
                r = bytearray()
                for x in range(w):
                    r += bytes(px(x, y)) + bytes([(255 * x // max(1, w - 1)) if (x + y) % 7 else 0])
                rows.append(bytes(r))
            return png_encode(w, h, 6, 8, rows, filters=filters)
        if variant in ("grey8", "greya8"):
            for y in range(h):
                r = bytearray()
                for x in range(w):
                    p = px(x, y)
                    g = (299 * p[0] + 587 * p[1] + 114 * p[2]) // 1000
                    r += bytes([g, 255 - (y * 255 // max(1, h - 1))]) if variant == "greya8" else bytes([g])
                rows.append(bytes(r))
            return png_encode(w, h, 4 if variant == "greya8" else 0, 8, rows, filters=filters)
        if variant == "rgb16":
            for y in range(h):
                r = bytearray()
                for x in range(w):
                    for c in px(x, y):
                        r += struct.pack(">H", c * 257 + (x & 0xFF) % 255)
                rows.append(bytes(r))
            return png_encode(w, h, 2, 16, rows, filters=filters)
        if variant == "palette8":
            palette = bytearray()
            for i in range(216):
                palette += bytes([(i // 36) * 51, (i // 6 % 6) * 51, (i % 6) * 51])
            trns = bytes([255] * 200 + [0] * 16)
            for y in range(h):
                rows.append(bytes(36 * (p[0] // 43) + 6 * (p[1] // 43) + p[2] // 43 for p in (px(x, y) for x in range(w))))
            return png_encode(w, h, 3, 8, rows, palette=palette, filters=filters, trns=trns)
        if variant == "grey1":
            for y in range(h):
                bits = [1 if sum(px(x, y)) > 384 else 0 for x in range(w)]
                bits += [0] * (-len(bits) % 8)
                rows.append(bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8)))
            return png_encode(w, h, 0, 1, rows, filters=filters)
        raise ValueError(variant)


PNG_VARIANTS = ["rgb8", "rgba8", "grey8", "greya8", "rgb16", "palette8", "grey1"]


# ---------------------------------------------------------------------------------------------
# JPEG


def jpeg_segments(data):
    """[(marker, offset, total length)] of the marker segments before the first scan's data, and
    where the entropy-coded data starts (or None)."""
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        m = data[i + 1]
        if m == 0xD8 or 0xD0 <= m <= 0xD7:
            out.append((m, i, 2))
            i += 2
            continue
        (n,) = struct.unpack(">H", data[i + 2 : i + 4])
        out.append((m, i, n + 2))
        i += n + 2
        if m == 0xDA:
            return out, i
    return out, None


def exif_app1(orientation, broken=False, rng=None):
    if not broken:
        ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
        tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    else:
        choice = rng.randrange(4)
        if choice == 0:  # IFD offset far outside
            tiff = b"MM\x00\x2a" + struct.pack(">I", 0xFFFFFFF0)
        elif choice == 1:  # entry count larger than the data
            tiff = b"II\x2a\x00" + struct.pack("<I", 8) + struct.pack("<H", 0xFFFF) + b"\x12\x01\x03\x00"
        elif choice == 2:  # orientation with a wrong type and a count pointing outside
            tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHII", 0x0112, 4, 0x40000000, 0x7FFFFFFF) + b"\0\0\0\0"
        else:  # a loop: the next IFD is the first one
            tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 8)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


# ---------------------------------------------------------------------------------------------
# MP4 and Matroska structure

MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex", b"stsd"}


def mp4_boxes(data, start=0, end=None, depth=0, out=None):
    """[(type, offset, size)] of every box, depth first."""
    if out is None:
        out = []
    end = len(data) if end is None else end
    i = start
    while i + 8 <= end and depth < 12:
        size, btype = struct.unpack(">I4s", data[i : i + 8])
        hdr = 8
        if size == 1 and i + 16 <= end:
            (size,) = struct.unpack(">Q", data[i + 8 : i + 16])
            hdr = 16
        elif size == 0:
            size = end - i
        if size < hdr or i + size > end:
            break
        out.append((btype, i, size))
        if btype in MP4_CONTAINERS:
            inner = i + hdr + (8 if btype == b"stsd" else 0)
            mp4_boxes(data, inner, i + size, depth + 1, out)
        elif btype in (b"avc1", b"mp4a", b"hvc1"):
            inner = i + hdr + (78 if btype != b"mp4a" else 28)
            mp4_boxes(data, inner, i + size, depth + 1, out)
        i += size
    return out


EBML_MASTERS = {
    0x1A45DFA3, 0x18538067, 0x114D9B74, 0x4DBB, 0x1549A966, 0x1654AE6B, 0xAE, 0xE0, 0xE1,
    0x1F43B675, 0xA0, 0x1C53BB6B, 0xBB, 0xB7, 0x1254C367, 0x7373, 0x63C0, 0x67C8, 0x6D80,
    0x55B0, 0x1941A469, 0x1043A770,
}


def ebml_vint(data, i, keep_marker):
    if i >= len(data) or data[i] == 0:
        return None, 0
    first = data[i]
    n = 8 - first.bit_length() + 1
    if i + n > len(data):
        return None, 0
    v = first if keep_marker else first & ((1 << (8 - n)) - 1)
    for b in data[i + 1 : i + n]:
        v = (v << 8) | b
    return v, n


def ebml_elements(data, start=0, end=None, depth=0, out=None):
    """[(id, offset, id length, size length, data offset, data size)] depth first."""
    if out is None:
        out = []
    end = len(data) if end is None else end
    i = start
    while i < end and depth < 10:
        eid, nid = ebml_vint(data, i, True)
        if eid is None:
            break
        size, nsz = ebml_vint(data, i + nid, False)
        if size is None:
            break
        dstart = i + nid + nsz
        if size == (1 << (7 * nsz)) - 1:  # unknown size
            size = end - dstart
        if dstart + size > end:
            size = end - dstart
        out.append((eid, i, nid, nsz, dstart, size))
        if eid in EBML_MASTERS:
            ebml_elements(data, dstart, dstart + size, depth + 1, out)
        i = dstart + size
    return out


def mkv_normalise(data):
    """The same Matroska file with its random UIDs (segment, tracks) replaced by fixed ones and
    its CRC-32 elements recomputed, so that seed videos are the same bytes on every run."""
    data = bytearray(data)
    els = ebml_elements(bytes(data))
    uids = {}
    for eid, off, nid, nsz, dstart, size in els:
        if eid == 0x73A4:  # SegmentUID
            data[dstart : dstart + size] = bytes(range(1, size + 1))
        elif eid in (0x73C5, 0x63C5) and 0 < size <= 8:  # TrackUID, TagTrackUID
            old = bytes(data[dstart : dstart + size])
            new = uids.setdefault(int.from_bytes(old, "big"), len(uids) + 1)
            data[dstart : dstart + size] = new.to_bytes(size, "big")
    for i, (eid, off, nid, nsz, dstart, size) in enumerate(els):
        if eid in EBML_MASTERS and i + 1 < len(els):
            cid, coff, cnid, cnsz, cstart, csize = els[i + 1]
            if cid == 0xBF and coff == dstart and csize == 4:
                crc = zlib.crc32(bytes(data[cstart + 4 : dstart + size])) & 0xFFFFFFFF
                data[cstart : cstart + 4] = struct.pack("<I", crc)
    return bytes(data)


# ---------------------------------------------------------------------------------------------
# safetensors


def vgg_layout():
    out = []
    for n in VGG_BLOCKS:
        out += ["conv", "relu"] * n + ["pool"]
    return out


def fixture_tensors(seed=1, widths=FIXTURE_VGG_WIDTHS):
    """[(name, dtype, shape, bytes)] of a He-initialised VGG19 with the given widths."""
    rng = random.Random(f"fixture-vgg19:{seed}")
    tensors, channels, widths = [], 3, iter(widths)
    for index, slot in enumerate(vgg_layout()):
        if slot != "conv":
            continue
        out = next(widths)
        std = math.sqrt(2.0 / max(1, channels * 9))
        w = array.array("f", (rng.gauss(0.0, 1.0) * std for _ in range(out * channels * 9)))
        b = array.array("f", (rng.gauss(0.0, 1.0) * 0.05 for _ in range(out)))
        if sys.byteorder != "little":
            w.byteswap()
            b.byteswap()
        tensors.append([f"features.{index}.weight", "F32", [out, channels, 3, 3], w.tobytes()])
        tensors.append([f"features.{index}.bias", "F32", [out], b.tobytes()])
        channels = out
    return tensors


def st_serialize(tensors, metadata=None, pad=b" ", align=8, data_prefix=b""):
    header, data = {}, bytearray(data_prefix)
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if align:
        h += pad * (-len(h) % align)
    return struct.pack("<Q", len(h)) + h + bytes(data)


def st_split(blob):
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def st_join(header, data, pad=True):
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32_to_f16(raw):
    vals = array.array("f")
    vals.frombytes(raw)
    return b"".join(struct.pack("<e", max(-65504.0, min(65504.0, v))) for v in vals)


def f32_to_bf16(raw):
    vals = array.array("I")
    vals.frombytes(raw)
    return b"".join(struct.pack("<H", v >> 16) for v in vals)


def f32_to_f64(raw):
    vals = array.array("f")
    vals.frombytes(raw)
    return array.array("d", vals).tobytes()


# ---------------------------------------------------------------------------------------------
# generic byte mutations

SPECIAL32 = [0, 1, 2, 3, 7, 8, 16, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def flip_bits(rng, data, lo=0, hi=None, count=None):
    data = bytearray(data)
    hi = len(data) if hi is None else hi
    if hi <= lo:
        return bytes(data)
    for _ in range(count or rng.randint(1, 32)):
        i = rng.randrange(lo, hi)
        data[i] ^= 1 << rng.randrange(8)
    return bytes(data)


def overwrite_runs(rng, data, lo, hi, runs=None, max_len=64):
    data = bytearray(data)
    if hi <= lo:
        return bytes(data)
    for _ in range(runs or rng.randint(1, 6)):
        i = rng.randrange(lo, hi)
        n = rng.randint(1, max_len)
        fill = rng.choice(["random", "zero", "ff", "repeat"])
        if fill == "random":
            piece = bytes(rng.randrange(256) for _ in range(n))
        elif fill == "zero":
            piece = bytes(n)
        elif fill == "ff":
            piece = b"\xff" * n
        else:
            piece = bytes([rng.randrange(256)]) * n
        data[i : i + n] = piece[: max(0, len(data) - i)]
    return bytes(data)


def truncate(rng, data, lo=0):
    if rng.random() < 0.3:
        return data[: rng.randrange(0, min(len(data), 200) + 1)]
    return data[: rng.randrange(lo, len(data))]


def append_garbage(rng, data):
    n = rng.choice([1, 7, 100, 4096])
    return data + bytes(rng.randrange(256) for _ in range(n))


def duplicate_range(rng, data):
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.randint(1, 4096))
    at = rng.randrange(len(data))
    return data[:at] + data[i:j] + data[at:]


def delete_range(rng, data):
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 2048) :]


# ---------------------------------------------------------------------------------------------
# cases


class Case:
    """What one run needs: files for in/, the command's arguments, and a description."""

    def __init__(self, kind, mutation, seed_name):
        self.kind, self.mutation, self.seed_name = kind, mutation, seed_name
        self.files = {}  # name in in/ -> bytes
        self.command = "image"  # or "video"
        self.input = None  # name in in/
        self.output = "out/out.png"  # relative to the case folder
        self.weights = None  # None: the fixture; else a name in in/
        self.preset = None  # name in in/
        self.extra_args = []
        self.layer_arg = True
        self.output_setup = None  # None, "same", "hardlink", "symlink", "stale"
        self.detail = ""

    def describe(self):
        d = f"{self.mutation}"
        if self.detail:
            d += f" ({self.detail})"
        return f"{d} of {self.seed_name}"


class Seeds:
    """The real inputs that the cases mutate."""

    def __init__(self, root, dreamvid, make_clip, log):
        self.root = root
        self.images = {}  # name -> bytes (png or jpeg)
        self.videos = {}  # name -> bytes
        self.presets = {}  # name -> text
        self.picture = None
        self.log = log
        self.make_images()
        self.make_jpeg_from_binary(dreamvid)
        self.make_videos(make_clip)
        self.make_presets()
        self.tensors = fixture_tensors()
        self.weights = st_serialize(self.tensors)
        self.weights_path = root / "fixture-vgg19.safetensors"
        self.weights_path.write_bytes(self.weights)
        self.checkpoints = make_checkpoints(root, self.tensors)

    def make_images(self):
        chelsea = (REPO / "assets" / "chelsea.png").read_bytes()
        self.images["chelsea.png"] = chelsea
        big = Picture.from_png(chelsea)
        self.picture = big.resized(64, 43)
        for v in PNG_VARIANTS:
            self.images[f"small-{v}.png"] = self.picture.encode(v, filters=[0, 1, 2, 3, 4])
        jpegs = []
        for dirpath, dirnames, filenames in os.walk(REPO):
            rel = Path(dirpath).relative_to(REPO)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (rel == Path(".") and d in ("target", "out")))
            for f in sorted(filenames):
                if f.lower().endswith((".jpg", ".jpeg")):
                    jpegs.append(Path(dirpath) / f)
        for p in jpegs:
            self.images[str(p.relative_to(REPO)).replace("/", "_")] = p.read_bytes()

    def make_jpeg_from_binary(self, dreamvid):
        """A small JPEG written by the binary itself (the `image` crate's encoder)."""
        src = self.root / "small.png"
        dst = self.root / "small.jpg"
        src.write_bytes(self.images["small-rgb8.png"])
        weights = self.root / "w-small.safetensors"
        weights.write_bytes(st_serialize(fixture_tensors()))
        r = subprocess.run(
            [str(dreamvid), "image", str(src), "-o", str(dst), "--weights", str(weights)] + DREAM_ARGS[:-1] + ["0"],
            capture_output=True,
            timeout=60,
        )
        if r.returncode == 0 and dst.exists():
            self.images["small-binary.jpg"] = dst.read_bytes()
        else:
            self.log(f"note: could not make a small JPEG with the binary: {r.stderr.decode(errors='replace').strip()[:200]}")
        for p in (src, dst, weights):
            if p.exists():
                p.unlink()

    def make_videos(self, make_clip):
        if not make_clip.exists():
            self.log(f"warning: {make_clip} is missing (cargo build --release --example make_clip); no video seeds")
            return
        for name, w, h in (("clip.mp4", 64, 48), ("clip.mkv", 64, 48), ("odd.mp4", 63, 47)):
            out = self.root / name
            for attempt in range(3):
                r = subprocess.run([str(make_clip), str(out), str(w), str(h), "1", "6"], capture_output=True, timeout=120)
                if r.returncode == 0 and out.exists():
                    break
                time.sleep(3)
            if r.returncode != 0 or not out.exists():
                self.log(f"warning: make_clip {name} failed: {r.stderr.decode(errors='replace').strip()[:300]}")
                continue
            data = out.read_bytes()
            self.videos[name] = mkv_normalise(data) if name.endswith(".mkv") else data
            out.unlink()

    def make_presets(self):
        for p in sorted((REPO / "presets").glob("*.toml")):
            self.presets[p.name] = p.read_text()


def pick_image(rng, seeds, fmt=None):
    names = sorted(seeds.images)
    if fmt == "png":
        names = [n for n in names if n.endswith(".png")]
    elif fmt == "jpeg":
        names = [n for n in names if n.lower().endswith((".jpg", ".jpeg"))]
    name = rng.choice(names)
    return name, seeds.images[name]


def is_png(data):
    return data[:8] == b"\x89PNG\r\n\x1a\n"


def claimed_pixels(data):
    """Pixels a PNG's IHDR or a JPEG's first SOF claims (0 when neither is found)."""
    if is_png(data) and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return w * h
    i = 2 if data[:2] == b"\xff\xd8" else len(data)
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w * h
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 2 if marker != 0xFF else 1
            continue
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return 0


def time_bound(cfg, case):
    """A case's time bound: TIMEOUT, plus PER_MEGAPIXEL seconds for each megapixel past the
    first that an image's header claims (dreamvid dreams legal pictures up to 33 MP, and that
    work grows with the size; a forged size is refused at once or decodes to that size)."""
    if case.kind != "image":
        return cfg["timeout"]
    extra = max(0, claimed_pixels(case.files.get(case.input, b"")) - 1_000_000) / 1e6
    return cfg["timeout"] + cfg["per_megapixel"] * min(extra, 34)


# --- images ---------------------------------------------------------------------------------


def mutate_png_header(rng, case, data):
    chunks = [(t, b) for t, b, _ in png_chunks(data)]
    t, ihdr = chunks[0]
    w, h, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", ihdr)
    field = rng.choice(["width", "height", "size", "depth", "ctype", "depth+ctype", "compression", "filter", "interlace"])
    tiny = [0, 1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 32, 33]
    big = [w - 1, w + 1, h * 2, 1000, 4096, 65535, 65536, 1 << 20, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    if field in ("width", "size"):
        w = rng.choice(tiny + big)
    if field in ("height", "size"):
        h = rng.choice(tiny + big)
    if field in ("depth", "depth+ctype"):
        depth = rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 32, 255])
    if field in ("ctype", "depth+ctype"):
        ctype = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 255])
    if field == "compression":
        comp = rng.choice([1, 8, 255])
    if field == "filter":
        filt = rng.choice([1, 5, 255])
    if field == "interlace":
        inter = rng.choice([1, 2, 255])
    fix = rng.random() < 0.75
    body = struct.pack(">IIBBBBB", w & 0xFFFFFFFF, h & 0xFFFFFFFF, depth, ctype, comp, filt, inter)
    case.detail = f"IHDR {field}: {w}x{h} depth {depth} colour {ctype} methods {comp}/{filt}/{inter}, CRC {'fixed' if fix else 'stale'}"
    crc = None if fix else zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF
    rest = b"".join(png_chunk(t, b) for t, b in chunks[1:])
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", body, crc) + rest


def mutate_png_chunks(rng, case, data):
    chunks = [(t, b) for t, b, _ in png_chunks(data)]
    op = rng.choice(["drop", "dup", "swap", "unknown-critical", "unknown-ancillary", "idat-corrupt", "idat-truncate", "idat-split", "idat-empty", "bad-crc", "huge-length", "plte-short", "plte-in-rgb", "trns-long", "zlib-bomb"])
    case.detail = op
    names = [t for t, _ in chunks]
    if op == "drop":
        which = rng.choice(sorted(set(names)))
        case.detail += f" {which.decode(errors='replace')}"
        return png_build([(t, b) for t, b in chunks if t != which])
    if op == "dup":
        i = rng.randrange(len(chunks))
        case.detail += f" {chunks[i][0].decode(errors='replace')}"
        return png_build(chunks[: i + 1] + [chunks[i]] + chunks[i + 1 :])
    if op == "swap" and len(chunks) > 2:
        i, j = rng.sample(range(len(chunks)), 2)
        chunks[i], chunks[j] = chunks[j], chunks[i]
        return png_build(chunks)
    if op in ("unknown-critical", "unknown-ancillary"):
        t = b"ZzZz" if op == "unknown-critical" else b"zzZz"
        at = rng.randrange(1, len(chunks))
        return png_build(chunks[:at] + [(t, bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))] + chunks[at:])
    idats = [i for i, (t, _) in enumerate(chunks) if t == b"IDAT"]
    if op.startswith("idat") and idats:
        i = rng.choice(idats)
        body = chunks[i][1]
        if op == "idat-corrupt":
            body = flip_bits(rng, body, lo=min(2, len(body)), count=rng.randint(1, 8))
        elif op == "idat-truncate":
            body = body[: rng.randrange(len(body))]
        elif op == "idat-split":
            k = rng.randrange(len(body) + 1)
            chunks = chunks[:i] + [(b"IDAT", body[:k]), (b"IDAT", body[k:])] + chunks[i + 1 :]
            return png_build(chunks)
        else:
            body = b""
        chunks[i] = (b"IDAT", body)
        return png_build(chunks)
    if op == "bad-crc":
        i = rng.randrange(len(chunks))
        out = bytearray(png_build(chunks))
        off = png_chunks(bytes(out))[i][2]
        end = off + 12 + len(chunks[i][1])
        out[end - 1] ^= 0x5A
        case.detail += f" on {chunks[i][0].decode(errors='replace')}"
        return bytes(out)
    if op == "huge-length":
        i = rng.randrange(len(chunks))
        out = bytearray(png_build(chunks))
        off = png_chunks(bytes(out))[i][2]
        out[off : off + 4] = struct.pack(">I", rng.choice([0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, len(out), len(chunks[i][1]) + 1]))
        return bytes(out)
    if op == "plte-short":
        at = 1
        return png_build(chunks[:at] + [(b"PLTE", bytes(rng.choice([0, 3, 5, 6, 768, 771])))] + chunks[at:])
    if op == "plte-in-rgb":
        return png_build(chunks[:1] + [(b"PLTE", bytes(range(48)))] + chunks[1:])
    if op == "trns-long":
        return png_build(chunks[:1] + [(b"tRNS", bytes(rng.randint(1, 600)))] + chunks[1:])
    if op == "zlib-bomb":
        # An IDAT that inflates to far more than the image needs (64 MiB of zeros).
        zb = zlib.compress(bytes(64 << 20), 9)
        return png_build([c for c in chunks if c[0] != b"IDAT" and c[0] != b"IEND"] + [(b"IDAT", zb), (b"IEND", b"")])
    return png_build(chunks)


def mutate_png_reencode(rng, case, seeds):
    """A valid PNG with an odd size, colour type or filter."""
    w = rng.choice([1, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 100, 257])
    h = rng.choice([1, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 100])
    if rng.random() < 0.2:
        w, h = rng.choice([(1, 1), (1, 2), (2, 1), (1, 300), (300, 1), (2, 2), (6, 6), (1, 64), (64, 1), (4000, 2), (2, 3000)])
    variant = rng.choice(PNG_VARIANTS)
    filters = rng.choice([[0], [1], [2], [3], [4], [0, 1, 2, 3, 4]])
    case.detail = f"{w}x{h} {variant} filters {filters}"
    return seeds.picture.resized(w, h).encode(variant, filters=filters)


def mutate_jpeg(rng, case, data):
    segs, scan = jpeg_segments(data)
    data = bytearray(data)
    sofs = [(m, o, n) for m, o, n in segs if m in (0xC0, 0xC1, 0xC2)]
    op = rng.choice(["sof-size", "sof-size", "sof-precision", "sof-components", "sof-sampling", "sof-process", "sof-quant-table", "dqt", "dht", "sos", "dri", "segment-length", "scan-bits", "scan-runs", "drop-eoi", "truncate-scan", "exif", "exif", "exif-broken", "drop-segment", "dup-sof", "rst-junk"])
    case.detail = op
    if op.startswith("sof") and sofs:
        m, o, n = sofs[0]
        if op == "sof-size":
            which = rng.choice(["h", "w", "both"])
            vals = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 4096, 65535]
            if which in ("h", "both"):
                data[o + 5 : o + 7] = struct.pack(">H", rng.choice(vals))
            if which in ("w", "both"):
                data[o + 7 : o + 9] = struct.pack(">H", rng.choice(vals))
            case.detail += " %dx%d" % (struct.unpack(">H", data[o + 7 : o + 9])[0], struct.unpack(">H", data[o + 5 : o + 7])[0])
        elif op == "sof-precision":
            data[o + 4] = rng.choice([0, 1, 7, 12, 16, 255])
            case.detail += f" {data[o + 4]}"
        elif op == "sof-components":
            data[o + 9] = rng.choice([0, 1, 2, 4, 5, 255])
            case.detail += f" {data[o + 9]}"
        elif op == "sof-sampling":
            k = rng.randrange(data[o + 9] or 1)
            data[o + 11 + 3 * k] = rng.choice([0x00, 0x11, 0x12, 0x21, 0x22, 0x41, 0x14, 0x44, 0x0F, 0xF0, 0xFF, 0x33])
            case.detail += f" component {k}: {data[o + 11 + 3 * k]:#04x}"
        elif op == "sof-process":
            data[o + 1] = rng.choice([0xC1, 0xC2, 0xC3, 0xC5, 0xC7, 0xC9, 0xCB, 0xCF])
            case.detail += f" {data[o + 1]:#04x}"
        else:
            k = rng.randrange(data[o + 9] or 1)
            data[o + 12 + 3 * k] = rng.choice([1, 2, 3, 4, 255])
        return bytes(data)
    if op in ("dqt", "dht", "sos", "segment-length", "drop-segment", "dup-sof"):
        marker = {"dqt": 0xDB, "dht": 0xC4, "sos": 0xDA}.get(op)
        cand = [(m, o, n) for m, o, n in segs if (marker is None and m != 0xD8) or m == marker]
        if cand:
            m, o, n = rng.choice(cand)
            if op == "segment-length":
                data[o + 2 : o + 4] = struct.pack(">H", rng.choice([0, 1, 2, 3, n - 3, n - 1, n + 1, 0xFFFF]))
                case.detail += f" of {m:#04x}"
            elif op == "drop-segment":
                del data[o : o + n]
                case.detail += f" {m:#04x}"
            elif op == "dup-sof" and sofs:
                m, o, n = sofs[0]
                data[o + n : o + n] = data[o : o + n]
            elif op == "dqt":
                if rng.random() < 0.5:
                    for i in range(o + 5, o + n):
                        data[i] = 0
                    case.detail += " all zero"
                else:
                    data[o + 4] = rng.choice([0x04, 0x10, 0x13, 0xF0, 0xFF])
                    case.detail += f" Pq/Tq {data[o + 4]:#04x}"
            elif op == "dht":
                data[o + 4 : o + n] = flip_bits(rng, bytes(data[o + 4 : o + n]), count=rng.randint(1, 6))
            else:  # sos
                field = rng.randrange(4, n)
                data[field] = rng.choice([0, 1, 0x0F, 0x3F, 0x40, 0xFF, data[field] ^ 0x11])
                case.detail += f" byte {field - o}"
        return bytes(data)
    if op == "dri":
        at = segs[1][1] if len(segs) > 1 else 2
        data[at:at] = b"\xff\xdd\x00\x04" + struct.pack(">H", rng.choice([0, 1, 2, 7, 65535]))
        case.detail += f" {struct.unpack('>H', data[at + 4 : at + 6])[0]}"
        return bytes(data)
    if op in ("scan-bits", "scan-runs", "truncate-scan", "drop-eoi", "rst-junk") and scan:
        end = len(data) - 2 if data[-2:] == b"\xff\xd9" else len(data)
        if op == "scan-bits":
            return flip_bits(rng, bytes(data), lo=scan, hi=end)
        if op == "scan-runs":
            return overwrite_runs(rng, bytes(data), scan, end)
        if op == "truncate-scan":
            return bytes(data[: rng.randrange(scan, len(data))])
        if op == "rst-junk":
            for _ in range(rng.randint(1, 5)):
                at = rng.randrange(scan, end)
                data[at:at] = bytes([0xFF, rng.choice([0xD0, 0xD3, 0xD7, 0xD8, 0xD9, 0xC0, 0xDA, 0x01])])
            return bytes(data)
        return bytes(data[:end])
    if op in ("exif", "exif-broken"):
        orientation = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 65535])
        if op == "exif":
            case.detail += f" orientation {orientation}"
        app1 = exif_app1(orientation, broken=op == "exif-broken", rng=rng)
        at = 2  # right after SOI, or after the JFIF APP0
        if len(segs) > 1 and segs[1][0] == 0xE0 and rng.random() < 0.5:
            at = segs[1][1] + segs[1][2]
        return bytes(data[:at]) + app1 + bytes(data[at:])
    return flip_bits(rng, bytes(data))


def png_fix_crcs(data):
    """The PNG with every chunk's CRC recomputed (as far as its chunk lengths still parse), so
    that a mutation reaches the decoder's later stages instead of its CRC check."""
    data = bytearray(data)
    for ctype, body, off in png_chunks(bytes(data)):
        end = off + 8 + len(body)
        data[end : end + 4] = struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
    return bytes(data)


def image_case(rng, seeds):
    op = rng.choices(
        ["bitflip", "byte-runs", "truncate", "append", "dup-range", "delete-range", "zero-length", "png-header", "png-chunks", "png-reencode", "jpeg-fields", "wrong-ext", "output-path"],
        weights=[8, 6, 8, 2, 2, 2, 1, 12, 10, 10, 14, 3, 2],
    )[0]
    fmt = "png" if op.startswith("png") else "jpeg" if op.startswith("jpeg") else None
    name, data = pick_image(rng, seeds, fmt)
    case = Case("image", op, name)
    ext = ".png" if is_png(data) else ".jpg"
    if op == "bitflip":
        data = flip_bits(rng, data)
    elif op == "byte-runs":
        data = overwrite_runs(rng, data, 0, len(data))
    elif op == "truncate":
        data = truncate(rng, data)
        case.detail = f"{len(data)} bytes"
    elif op == "append":
        data = append_garbage(rng, data)
    elif op == "dup-range":
        data = duplicate_range(rng, data)
    elif op == "delete-range":
        data = delete_range(rng, data)
    elif op == "zero-length":
        data = b""
    elif op == "png-header":
        data = mutate_png_header(rng, case, data)
    elif op == "png-chunks":
        data = mutate_png_chunks(rng, case, data)
    elif op == "png-reencode":
        data = mutate_png_reencode(rng, case, seeds)
        case.seed_name = "chelsea (resized)"
    elif op == "jpeg-fields":
        data = mutate_jpeg(rng, case, data)
    if op in ("bitflip", "byte-runs") and is_png(data) and rng.random() < 0.5:
        data = png_fix_crcs(data)
        case.detail = "CRCs fixed"
    if op == "wrong-ext":
        ext = rng.choice([".jpg" if ext == ".png" else ".png", "", ".PNG", ".jpeg", ".gif", ".webp", ".bmp", ".tiff", ".mp4", ".txt"])
        case.detail = f"named {ext or '(no extension)'}"
        if ext == ".mp4" and rng.random() < 0.5:
            case.command = "video"
            case.output = "out/out.mp4"
    elif op == "output-path":
        case.output_setup = rng.choice(["same", "hardlink", "symlink", "stale", "stale", "outdir-missing", "output-is-dir"])
        case.detail = case.output_setup
    case.input = "input" + ext
    case.files[case.input] = data
    if case.command == "image" and rng.random() < 0.2:
        case.output = "out/out.jpg"
    return case


# --- videos ---------------------------------------------------------------------------------


def mutate_mp4(rng, case, data):
    boxes = mp4_boxes(data)
    data = bytearray(data)
    op = rng.choice(["box-field", "box-field", "box-field", "box-size", "box-kill", "box-type"])
    case.detail = op
    if not boxes:
        return flip_bits(rng, bytes(data))
    if op == "box-field":
        interesting = [b for b in boxes if b[0] in (b"mvhd", b"mdhd", b"tkhd", b"stsz", b"stco", b"co64", b"stts", b"stsc", b"stss", b"ctts", b"elst", b"hdlr", b"avcC", b"esds", b"avc1", b"mp4a", b"stsd", b"hvcC", b"colr", b"pasp")]
        btype, off, size = rng.choice(interesting or boxes)
        hi = min(size, 96)
        word = rng.randrange(8, max(9, hi - 3))
        value = rng.choice(SPECIAL32 + [rng.getrandbits(32)])
        data[word + off : word + off + 4] = struct.pack(">I", value)[: max(0, len(data) - word - off)]
        case.detail += f" {btype.decode(errors='replace')}+{word} = {value:#x}"
    elif op == "box-size":
        btype, off, size = rng.choice(boxes)
        value = rng.choice([0, 1, 7, 8, size - 1, size + 1, size * 2, 0x7FFFFFFF, 0xFFFFFFFF, len(data) + 1000])
        data[off : off + 4] = struct.pack(">I", value & 0xFFFFFFFF)
        case.detail += f" {btype.decode(errors='replace')} = {value}"
    elif op == "box-kill":
        cand = [b for b in boxes if b[0] in (b"trak", b"moov", b"mdat", b"stbl", b"stsd", b"avcC", b"stsz", b"stco", b"mdia", b"minf", b"ftyp", b"edts", b"stss")]
        btype, off, size = rng.choice(cand or boxes)
        data[off + 4 : off + 8] = b"free"
        traks = [b for b in boxes if b[0] == b"trak"]
        case.detail += f" {btype.decode(errors='replace')}" + (f" #{traks.index((btype, off, size))}" if btype == b"trak" else "")
    else:
        btype, off, size = rng.choice(boxes)
        new = rng.choice([b"moov", b"mdat", b"trak", b"zzzz", b"\x00\x00\x00\x00", b"uuid", b"meta"])
        data[off + 4 : off + 8] = new
        case.detail += f" {btype.decode(errors='replace')} -> {new.decode(errors='replace')}"
    return bytes(data)


def mutate_mkv(rng, case, data):
    els = ebml_elements(data)
    data = bytearray(data)
    op = rng.choice(["element-value", "element-value", "element-value", "element-size", "element-kill", "block-header"])
    case.detail = op
    if not els:
        return flip_bits(rng, bytes(data))
    leaves = [e for e in els if e[0] not in EBML_MASTERS]
    if op == "element-value" and leaves:
        interesting = [e for e in leaves if e[0] in (0xB0, 0xBA, 0x2AD7B1, 0x86, 0x23E383, 0xD7, 0x83, 0x63A2, 0x9F, 0xB5, 0x4489, 0xE7, 0x4286, 0x42F7, 0x42F2, 0x42F3, 0x4282, 0x54B0, 0x54BA, 0x9A, 0x53AC)]
        eid, off, nid, nsz, dstart, size = rng.choice(interesting or leaves)
        if size == 0:
            return bytes(data)
        choice = rng.randrange(3)
        if choice == 0:
            data[dstart : dstart + size] = bytes(size)
        elif choice == 1:
            data[dstart : dstart + size] = b"\xff" * size
        else:
            data[dstart : dstart + size] = bytes(rng.randrange(256) for _ in range(size))
        case.detail += f" {eid:#x} ({size} bytes) {['zero', 'all ones', 'random'][choice]}"
    elif op == "element-size":
        eid, off, nid, nsz, dstart, size = rng.choice(els)
        at = off + nid
        kind = rng.choice(["unknown", "zero", "huge", "plus1", "minus1"])
        maxv = (1 << (7 * nsz)) - 1
        v = {"unknown": maxv, "zero": 0, "huge": maxv - 1, "plus1": min(maxv - 1, size + 1), "minus1": max(0, size - 1)}[kind]
        enc = v | (1 << (7 * nsz))
        data[at : at + nsz] = enc.to_bytes(nsz, "big")
        case.detail += f" {eid:#x} {kind}"
    elif op == "element-kill":
        cand = [e for e in els if e[2] == 1 and e[0] in (0xAE, 0xE0, 0xE1, 0xA3, 0xA0, 0x86, 0xB0, 0xBA, 0xD7, 0x83)]
        cand += [e for e in els if e[2] == 4 and e[0] in (0x1654AE6B, 0x1F43B675, 0x1549A966, 0x1C53BB6B)]
        if cand:
            eid, off, nid, nsz, dstart, size = rng.choice(cand)
            if nid == 1:
                data[off] = 0xEC  # Void
            else:
                data[off : off + 4] = b"\x1f\x43\xb6\x75" if eid != 0x1F43B675 else b"\x1c\x53\xbb\x6b"
            case.detail += f" {eid:#x}"
    else:
        blocks = [e for e in els if e[0] in (0xA3, 0xA1)]
        if blocks:
            eid, off, nid, nsz, dstart, size = rng.choice(blocks)
            field = rng.choice(["track", "timecode", "flags"])
            if field == "track":
                data[dstart] = rng.choice([0x80, 0x81, 0x82, 0x83, 0xFF, 0x40, 0x01])
            elif field == "timecode" and size > 3:
                data[dstart + 1 : dstart + 3] = struct.pack(">h", rng.choice([-32768, -1, 0, 32767, rng.randint(-32768, 32767)]))
            elif size > 3:
                data[dstart + 3] = rng.choice([0x00, 0x02, 0x06, 0x80, 0x86, 0xFF])
            case.detail += f" {field}"
    return bytes(data)


def video_case(rng, seeds):
    op = rng.choices(
        ["packet-runs", "bitflip", "truncate", "truncate-tail", "zero-length", "container-fields", "splice", "dup-range", "delete-range", "append", "wrong-ext", "image-as-video", "output-path"],
        weights=[14, 8, 8, 5, 1, 18, 3, 3, 3, 2, 5, 3, 2],
    )[0]
    name = rng.choice(sorted(seeds.videos))
    data = seeds.videos[name]
    ext = Path(name).suffix
    case = Case("video", op, name)
    case.command = "video"
    case.output = "out/out.mp4"
    n = len(data)
    if op == "packet-runs":
        data = overwrite_runs(rng, data, n // 10, n * 9 // 10, max_len=rng.choice([4, 64, 512]))
    elif op == "bitflip":
        data = flip_bits(rng, data, lo=rng.choice([0, n // 10]))
    elif op == "truncate":
        data = truncate(rng, data)
        case.detail = f"{len(data)} of {n} bytes"
    elif op == "truncate-tail":
        data = data[: n - rng.randint(1, max(1, n * 3 // 10))]
        case.detail = f"{len(data)} of {n} bytes"
    elif op == "zero-length":
        data = b""
    elif op == "container-fields":
        data = mutate_mp4(rng, case, data) if ext == ".mp4" else mutate_mkv(rng, case, data)
    elif op == "splice":
        other_name = rng.choice(sorted(seeds.videos))
        other = seeds.videos[other_name]
        data = data[: rng.randrange(n)] + other[rng.randrange(len(other)) :]
        case.detail = f"with {other_name}"
    elif op == "dup-range":
        data = duplicate_range(rng, data)
    elif op == "delete-range":
        data = delete_range(rng, data)
    elif op == "append":
        data = append_garbage(rng, data)
    elif op == "wrong-ext":
        ext = rng.choice([".png", ".jpg", ".mkv" if ext == ".mp4" else ".mp4", ".mov", ".avi", ".gif", "", ".txt", ".toml"])
        case.detail = f"named {ext or '(no extension)'}"
        if ext in (".png", ".jpg") or rng.random() < 0.15:
            case.command = "image"
            case.output = "out/out.png"
            case.detail += ", to `image`"
    elif op == "image-as-video":
        iname, data = pick_image(rng, seeds)
        case.seed_name = iname
        ext = rng.choice([".mp4", ".mkv", Path(iname).suffix])
        case.detail = f"named {ext}"
    elif op == "output-path":
        case.output_setup = rng.choice(["same", "hardlink", "symlink", "stale", "stale", "outdir-missing", "output-is-dir"])
        case.detail = case.output_setup
    case.input = "input" + ext
    case.files[case.input] = data
    if case.command == "video" and rng.random() < 0.2:
        case.output = rng.choice(["out/out.mkv", "out/out.mov"])
    return case


# --- presets --------------------------------------------------------------------------------

PRESET_PIECES = ["[", "]", "=", '"', "\n", "[[keyframe]]", "frame = ", "1e999", "-", "{", "}", ",", "layer", "nan", "0x", "\0", "é", "'", "#", "[dream]", "[video]", "[zoom]", "\\", '"""', "inf", "seconds = ", "9" * 30]
PRESET_KEYS = {
    "dream": ["layer", "layers", "channels", "octaves", "octave_scale", "iterations", "lr", "jitter", "smooth", "seed"],
    "video": ["coherence", "blend", "temporal_weight", "scene_cut"],
    "zoom": ["zoom", "rotate", "translate"],
    "": ["description", "model"],
}
WEIRD_VALUES = [
    '"x"', '""', "[]", "{}", "true", "false", "nan", "-nan", "+nan", "inf", "-inf", "1e309", "-1e309", "1e-320", "0", "-0.0",
    "-1", "1", "0.5", "9223372036854775807", "-9223372036854775808", "18446744073709551616", "4294967296", "65536",
    "1.0e38", "12", "13", "1000", "1001", "0x7fffffff", "[1, 2, 3]", "[0.0, 900.0]", '[nan, inf]', '{ "features.20" = nan }',
    '{ "features.20" = 1e39 }', '{ "features.20" = -1.0 }', '{ "" = 1.0 }', '{ "features.99" = 1.0 }', "[99999]", "[-1]", "[4294967296]",
    '"features.20"', '"20"', '"99"', '"features.-1"', '"blocks.10"', '"\\u0000"', "1979-05-27T07:32:00Z", '"flow"', '"FLOW"',
]


def mutate_preset_text(rng, case, text):
    op = rng.choice(["edit", "edit", "wrong-value", "wrong-value", "wrong-value", "unknown-key", "unknown-table", "duplicate-key", "keyframes", "keyframes", "keyframes", "bytes", "empty"])
    case.mutation = "preset-" + op
    lines = text.split("\n")
    if op == "edit":
        s = list(text)
        steps = []
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(s) + 1)
            k = rng.randrange(3)
            if k == 0 and at < len(s):
                del s[at : at + rng.randint(1, 8)]
                steps.append(f"delete@{at}")
            elif k == 1:
                piece = rng.choice(PRESET_PIECES)
                s[at:at] = list(piece)
                steps.append(f"insert {piece!r}@{at}")
            else:
                del s[at:]
                steps.append(f"truncate@{at}")
        case.detail = ", ".join(steps)
        return "".join(s).encode("utf-8", "surrogatepass")
    if op == "wrong-value":
        idx = [i for i, l in enumerate(lines) if re.match(r"^\s*[A-Za-z_]+\s*=", l)]
        i = rng.choice(idx)
        key = lines[i].split("=", 1)[0].strip()
        v = rng.choice(WEIRD_VALUES)
        lines[i] = f"{key} = {v}"
        case.detail = f"{key} = {v}"
        return "\n".join(lines).encode()
    if op == "unknown-key":
        table = rng.choice(["", "dream", "video", "zoom"])
        key = rng.choice(["octves", "Layer", "model2", "layer ", "tile", "codec", "crf", "fps", "frames", "weights", "device", "x" * 300, '"quoted key"', "ünïcode"])
        extra = f"{key} = {rng.choice(WEIRD_VALUES)}"
        case.detail = f"[{table}] {extra}"
        if table == "":
            return (extra + "\n" + text).encode()
        return (text + f"\n[{table}]\n{extra}\n").encode()
    if op == "unknown-table":
        t = rng.choice(["[dreams]", "[[dream]]", "[dream.sub]", "[keyframe]", "[[keyframes]]", "[render]", "[[video]]"])
        case.detail = t
        return (text + f"\n{t}\nlayer = \"features.20\"\n").encode()
    if op == "duplicate-key":
        idx = [i for i, l in enumerate(lines) if re.match(r"^\s*[A-Za-z_]+\s*=", l)]
        i = rng.choice(idx)
        lines.insert(i + 1, lines[i])
        case.detail = lines[i].split("=")[0].strip()
        return "\n".join(lines).encode()
    if op == "keyframes":
        out = [text.rstrip("\n"), ""]
        n = rng.randint(1, 4)
        frames = sorted(rng.choice([0, 1, 2, 5, 6, 48, 10**6, 2**53, -1, 2**63 - 1]) for _ in range(n))
        if rng.random() < 0.3:
            rng.shuffle(frames)
        desc = []
        for f in frames:
            out.append("[[keyframe]]")
            tkey = rng.choice(["frame", "frame", "frame", "seconds", "both", "none"])
            if tkey in ("frame", "both"):
                out.append(f"frame = {f}")
            if tkey in ("seconds", "both"):
                out.append(f"seconds = {rng.choice([0.0, 0.5, 2.0, -1.0, 'nan', 'inf', 1e300, 1e-300])}")
            for _ in range(rng.randint(1, 3)):
                key = rng.choice(["layer", "layers", "channels", "octaves", "iterations", "lr", "jitter", "smooth", "blend", "temporal_weight", "zoom", "rotate", "translate", "octave_scale", "interpolation", "seed", "coherence", "scene_cut"])
                if key == "interpolation":
                    val = rng.choice(['"linear"', '"ease-in-out"', '"step"', '"cubic"', "1", '""'])
                elif key == "layer":
                    val = rng.choice(['"features.20"', '"features.30"', '"20"', '"features.36"', '"features.99"', '"blocks.10"', "20"])
                elif key == "layers":
                    val = rng.choice(['{ "features.20" = 1.0 }', '{ "features.20" = 0.3, "features.30" = 1.0 }', "{}", '{ "features.20" = 0.0 }', '{ "features.20" = nan }', '{ "features.20" = inf }', '{ "features.0" = 1.0, "features.36" = 1.0 }'])
                elif key == "channels":
                    val = rng.choice(["[0]", "[7]", "[8]", "[0, 0, 0]", "[]", "[99999]", "[-1]", "[0, 7, 3]", "[511]"])
                else:
                    val = rng.choice(WEIRD_VALUES[:30] + ["1", "2", "0.5", "1.04"])
                out.append(f"{key} = {val}")
                desc.append(f"{key}={val}")
        case.detail = f"frames {frames}: " + ", ".join(desc)[:200]
        return ("\n".join(out) + "\n").encode()
    if op == "bytes":
        data = bytearray(text.encode())
        choice = rng.randrange(4)
        if choice == 0:
            data = b"\xef\xbb\xbf" + data
            case.detail = "BOM"
        elif choice == 1:
            at = rng.randrange(len(data))
            data[at:at] = rng.choice([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\x1b[31m"])
            case.detail = "bytes inserted"
        elif choice == 2:
            data = flip_bits(rng, bytes(data), count=rng.randint(1, 8))
            case.detail = "bits flipped"
        else:
            data = data.replace(b"\n", b"\r\n") if rng.random() < 0.5 else data.replace(b"\n", b"\r")
            case.detail = "line endings"
        return bytes(data)
    case.detail = ""
    return rng.choice([b"", b"\n", b"   ", b"#", b"\0"])


def preset_case(rng, seeds):
    name = rng.choice(sorted(seeds.presets))
    text = seeds.presets[name]
    case = Case("preset", "preset", name)
    data = mutate_preset_text(rng, case, text)
    case.preset = rng.choice(["preset.toml", "preset.toml", "preset.toml", "my.preset.toml", "preset.TOML", "preset"])
    case.files[case.preset] = data
    # VGG19 presets keep their own layers; the others get --layer 20 (their layers are Lite0's).
    case.layer_arg = 'model = "vgg19"' not in text
    if rng.random() < 0.3 and seeds.videos:
        case.command = "video"
        case.input = "input.mp4"
        case.files[case.input] = seeds.videos.get("clip.mp4") or next(iter(seeds.videos.values()))
        case.output = "out/out.mp4"
    else:
        case.input = "input.png"
        case.files[case.input] = seeds.images["small-rgb8.png"]
    return case


# --- safetensors ----------------------------------------------------------------------------


def safetensors_case(rng, seeds):
    op = rng.choices(
        ["truncate", "header-length", "header-json", "offsets", "nan-weights", "shape", "zero-channels", "missing-tensor", "extra-tensor", "dtype", "metadata", "misaligned", "bitflip", "zero-length", "duplicate-key", "deep-nesting", "widths"],
        weights=[8, 10, 8, 10, 8, 10, 3, 4, 4, 10, 3, 3, 5, 1, 2, 1, 4],
    )[0]
    case = Case("safetensors", "st-" + op, "fixture-vgg19.safetensors")
    tensors = [list(t) for t in seeds.tensors]
    blob = seeds.weights
    header, data = st_split(blob)
    names = [t[0] for t in tensors]
    if op == "truncate":
        hl = struct.unpack("<Q", blob[:8])[0]
        where = rng.choice(["length", "header", "data", "data", "last-byte"])
        cut = {"length": rng.randrange(0, 8), "header": rng.randrange(8, 8 + hl), "data": rng.randrange(8 + hl, len(blob)), "last-byte": len(blob) - 1}[where]
        out = blob[:cut]
        case.detail = f"in the {where}, {cut} of {len(blob)} bytes"
    elif op == "header-length":
        hl = struct.unpack("<Q", blob[:8])[0]
        v = rng.choice([0, 1, 2, hl - 1, hl - 8, hl + 1, hl + 8, len(blob) - 8, len(blob), 1 << 32, 100 << 20, 1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, (1 << 64) - 8])
        out = struct.pack("<Q", v) + blob[8:]
        case.detail = f"{v} (header is {hl}; as i64 {v - (1 << 64) if v >= 1 << 63 else v})"
    elif op == "header-json":
        hl = struct.unpack("<Q", blob[:8])[0]
        h = bytearray(blob[8 : 8 + hl])
        choice = rng.choice(["flip", "runs", "replace", "non-utf8", "trailing", "short"])
        if choice == "flip":
            h = bytearray(flip_bits(rng, bytes(h), count=rng.randint(1, 6)))
        elif choice == "runs":
            h = bytearray(overwrite_runs(rng, bytes(h), 0, len(h), runs=rng.randint(1, 3), max_len=8))
        elif choice == "replace":
            rep = rng.choice([b"[]", b"null", b"{}", b"1", b'"x"', b"{\"a\":1}", b"{\"features.0.weight\":null}", b"{\"features.0.weight\":{}}", b"{\"features.0.weight\":[]}"])
            h = bytearray(rep.ljust(len(h)))
            choice += " " + rep.decode()
        elif choice == "non-utf8":
            at = rng.randrange(len(h))
            h[at] = rng.choice([0xFF, 0xC3, 0x80, 0x00])
        elif choice == "trailing":
            h = bytearray(bytes(h).rstrip() + rng.choice([b"}", b"x", b",", b"\x00", b"{}"]))
        else:
            h = bytearray(bytes(h)[: rng.randrange(len(h))].ljust(len(h)))
        out = blob[:8] + bytes(h) + blob[8 + hl :] if len(h) == hl else st_join_raw(bytes(h), data)
        case.detail = choice
    elif op == "offsets":
        name = rng.choice(names)
        b, e = header[name]["data_offsets"]
        choice = rng.choice(["end-beyond", "begin-after-end", "overlap", "short", "long", "negative", "float", "huge", "one-element", "three-elements", "not-a-list", "string", "gap"])
        new = {
            "end-beyond": [b, len(data) + rng.choice([1, 4, 1000, 1 << 40])],
            "begin-after-end": [e, b],
            "overlap": [max(0, b - 4), e - 4] if b >= 4 else [0, e - b],
            "short": [b, e - 4],
            "long": [b, e + 4],
            "negative": [-4, e],
            "float": [float(b), float(e)],
            "huge": [b, (1 << 64) - 1],
            "one-element": [b],
            "three-elements": [b, e, e],
            "not-a-list": {"begin": b, "end": e},
            "string": [str(b), str(e)],
            "gap": [b + 4, e + 4],
        }[choice]
        header[name]["data_offsets"] = new
        out = st_join(header, data)
        case.detail = f"{name} {choice} {new}"
    elif op == "nan-weights":
        name = rng.choice(names)
        t = next(t for t in tensors if t[0] == name)
        vals = array.array("f")
        vals.frombytes(t[3])
        what = rng.choice(["nan", "inf", "-inf", "1e38", "-1e38", "denormal", "mixed", "zero"])
        fill = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "1e38": 1e38, "-1e38": -1e38, "denormal": 1e-42, "zero": 0.0}
        count = rng.choice([1, len(vals)])
        for i in rng.sample(range(len(vals)), count):
            vals[i] = fill[what] if what in fill else rng.choice([float("nan"), float("inf"), -3e38, 0.0])
        t[3] = vals.tobytes()
        out = st_serialize(tensors)
        case.detail = f"{name}: {count} value(s) {what}"
    elif op == "shape":
        choice = rng.choice(["dim-changed", "rank-up", "rank-down", "scalar", "kernel-1x1", "kernel-5x5", "kernel-3x1", "zero-dim", "in-channels", "huge-dim"])
        if choice in ("rank-down", "kernel-1x1", "kernel-5x5", "kernel-3x1", "in-channels"):
            i = rng.choice([k for k, t in enumerate(tensors) if len(t[2]) == 4])
        else:
            i = rng.randrange(len(tensors))
        name, dtype, shape, raw = tensors[i]
        if choice == "dim-changed":
            k = rng.randrange(len(shape))
            shape = list(shape)
            shape[k] += rng.choice([-1, 1, 2])
        elif choice == "rank-up":
            shape = list(shape) + [1]
        elif choice == "rank-down":
            shape = [int(len(raw) // 4)]
        elif choice == "scalar":
            shape, raw = [], raw[:4]
        elif choice in ("kernel-1x1", "kernel-5x5", "kernel-3x1") and len(shape) == 4:
            kh, kw = {"kernel-1x1": (1, 1), "kernel-5x5": (5, 5), "kernel-3x1": (3, 1)}[choice]
            shape = [shape[0], shape[1], kh, kw]
            raw = bytes(4 * shape[0] * shape[1] * kh * kw)
        elif choice == "zero-dim":
            shape = [0] + list(shape[1:])
            raw = b""
        elif choice == "in-channels" and len(shape) == 4:
            c = rng.choice([1, 2, 3, 16])
            shape = [shape[0], c, 3, 3]
            raw = bytes(4 * shape[0] * c * 9)
        elif choice == "huge-dim":
            shape = list(shape)
            shape[0] = rng.choice([1 << 31, 1 << 40, (1 << 63) - 1])
        tensors[i] = [name, dtype, shape, raw]
        out = st_serialize(tensors)
        case.detail = f"{name} {choice} {shape}"
    elif op == "zero-channels":
        widths = list(FIXTURE_VGG_WIDTHS)
        k = rng.randrange(len(widths))
        widths[k] = 0
        tensors = fixture_tensors(widths=widths)
        out = st_serialize(tensors)
        case.detail = f"convolution {k} has 0 output channels"
    elif op == "widths":
        widths = [rng.choice([1, 2, 3, 4, 8, 16, 17]) for _ in FIXTURE_VGG_WIDTHS]
        tensors = fixture_tensors(seed=rng.randrange(1000), widths=widths)
        out = st_serialize(tensors)
        case.detail = f"widths {widths} (valid)"
    elif op == "missing-tensor":
        name = rng.choice(names)
        tensors = [t for t in tensors if t[0] != name]
        out = st_serialize(tensors)
        case.detail = name
    elif op == "extra-tensor":
        name = rng.choice(["features.37.weight", "features.1.weight", "features.4.bias", "classifier.0.weight", "", " ", "features..weight", "\u00e9", "__metadata__x", "features.0.weight.extra"])
        tensors.append([name, "F32", [2, 2], bytes(16)])
        out = st_serialize(tensors)
        case.detail = repr(name)
    elif op == "dtype":
        i = rng.randrange(len(tensors))
        name, dtype, shape, raw = tensors[i]
        choice = rng.choice(["F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "I8", "U32", "C64", "f32", "XYZ", ""])
        reencode = rng.random() < 0.5 and choice in ("F16", "BF16", "F64")
        if reencode:
            raw = {"F16": f32_to_f16, "BF16": f32_to_bf16, "F64": f32_to_f64}[choice](raw)
        elif choice in ("I64", "I32", "U8", "I8", "U32", "BOOL", "F8_E4M3", "F8_E5M2", "C64") and rng.random() < 0.5:
            size = {"I64": 8, "I32": 4, "U32": 4, "U8": 1, "I8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8}[choice]
            n = 1
            for d in shape:
                n *= d
            raw = bytes(rng.randrange(256) for _ in range(n * size)) if n * size < 100000 else bytes(n * size)
            reencode = True
        tensors[i] = [name, choice, shape, raw]
        if rng.random() < 0.15:  # every tensor in that dtype
            tensors = [[n, choice, s, {"F16": f32_to_f16, "BF16": f32_to_bf16, "F64": f32_to_f64}[choice](r) if reencode and choice in ("F16", "BF16", "F64") else r] for n, _, s, r in tensors]
            name = "every tensor"
        out = st_serialize(tensors)
        case.detail = f"{name} as {choice or '(empty)'}{' (re-encoded)' if reencode else ' (label only)'}"
    elif op == "metadata":
        meta = rng.choice([{"format": "pt"}, {"a": 1}, {"a": None}, {"a": ["x"]}, [], "x", None, {"": ""}, {"format": "x" * 100000}])
        tensors_json = json.loads(json.dumps(header))
        tensors_json["__metadata__"] = meta
        out = st_join(tensors_json, data)
        case.detail = json.dumps(meta)[:60]
    elif op == "misaligned":
        if rng.random() < 0.5:
            # the header not padded to 8 bytes: the data starts at an odd address
            out = st_serialize(tensors, align=0)
            case.detail = "header length not a multiple of 8"
        else:
            pad = rng.randint(1, 7)
            out = st_serialize(tensors, data_prefix=bytes(pad))
            case.detail = f"{pad} bytes before the first tensor"
    elif op == "bitflip":
        out = flip_bits(rng, blob, lo=rng.choice([0, 8]))
    elif op == "zero-length":
        out = b""
    elif op == "duplicate-key":
        hjson = json.dumps(header, separators=(",", ":"))
        name = rng.choice(names)
        entry = json.dumps({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, separators=(",", ":"))
        hjson = hjson[:-1] + f',"{name}":{entry}' + "}"
        out = st_join_raw(hjson.encode(), data)
        case.detail = name
    else:  # deep-nesting
        depth = rng.choice([200, 5000, 100000])
        hjson = '{"__metadata__":' + "[" * depth + "]" * depth + "}"
        out = st_join_raw(hjson.encode(), data)
        case.detail = f"depth {depth}"
    case.weights = rng.choice(["weights.safetensors", "weights.safetensors", "weights.bin", "weights"])
    case.files[case.weights] = out
    case.input = "input.png"
    case.files[case.input] = seeds.images["small-rgb8.png"]
    return case


def st_join_raw(h, data):
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


# --- pth --------------------------------------------------------------------------------------

PTH_LAYOUTS = {
    "zip": dict(), "zip-1x": dict(layout="1.x", archive="archive", metadata=False),
    "zip-channels-last": dict(channels_last=True), "zip-shared": dict(shared=True),
    "zip-parameter": dict(rebuild="parameter"), "legacy": dict(legacy=True),
    "legacy-v1": dict(legacy=True, rebuild="v1", metadata=False),
    "legacy-v0": dict(legacy=True, rebuild="v0", metadata=False),
}


def make_checkpoints(root, tensors):
    """{layout: bytes} of the fixture weights as PyTorch checkpoints (scripts/write_pth.py)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import write_pth
    mapped = write_pth.collections.OrderedDict((n, (d, shape, raw)) for n, d, shape, raw in tensors)
    out = {}
    for name, opts in PTH_LAYOUTS.items():
        opts = dict(opts)
        path = root / f"fixture-{name}.pth"
        if opts.pop("legacy", False):
            write_pth.write_legacy(str(path), mapped, **opts)
        else:
            write_pth.write_zip(str(path), mapped, **opts)
        out[name] = path.read_bytes()
    return out


def zip_records(blob):
    """[(name, bytes)] of a zip checkpoint."""
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def zip_build(records, deflate=()):
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in records:
            z.writestr(name, data, zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED)
    return out.getvalue()


PICKLE_OPS = b"().0N\x88\x89KMJ\x8a]}lts\x85\x86\x87RQbhjqr\x94\x93Xcu"


def hostile_pickle(rng, marker):
    """A pickle that torch.load would let do harm, or that bombs a naive reader."""
    def text(t):
        b = t.encode()
        return b"X" + struct.pack("<I", len(b)) + b
    what = rng.choice(["os-system", "eval", "nested", "marks", "billion-laughs", "quadratic", "huge-string", "long-line"])
    if what == "os-system":
        body = b"cposix\nsystem\n" + text(f"touch {marker}") + b"\x85R"
    elif what == "eval":
        body = b"}" + text("features.0.weight") + b"cbuiltins\neval\n" + text(f"__import__('os').system('touch {marker}')") + b"\x85Rs"
    elif what == "nested":
        body = b"N" + b"\x85" * rng.choice([101, 5000, 300000])
    elif what == "marks":
        body = b"(" * rng.choice([1000, 1000000])
    elif what == "billion-laughs":
        body = b"]q\x00" + (b"(" + b"h\x00" * 10 + b"lq\x00") * rng.choice([20, 90])
    elif what == "quadratic":
        body = b"]q\x00" + b"Naq\x00" * rng.choice([10000, 300000])
    elif what == "huge-string":
        body = rng.choice([b"\x8d", b"\x8e"]) + struct.pack("<Q", rng.choice([1 << 31, 1 << 62, (1 << 64) - 1])) + b"abc"
    else:
        body = b"c" + b"a" * rng.choice([5000, 1 << 20])
    return what, b"\x80\x02" + body + b"."


# Mutations of any file's bytes, by name.
BYTE_MUTATIONS = {
    "truncate": truncate, "bitflip": flip_bits, "duplicate": duplicate_range, "delete": delete_range,
    "overwrite": lambda rng, data: overwrite_runs(rng, data, 0, len(data)),
}


def pth_case(rng, seeds):
    layout = rng.choice(sorted(seeds.checkpoints))
    blob = seeds.checkpoints[layout]
    zipped = not layout.startswith("legacy")
    ops = ["truncate", "bitflip", "overwrite", "hostile", "duplicate", "delete"]
    ops += ["pickle-op", "pickle-cut", "storage-cut", "storage-missing", "compressed", "rename", "traversal"] if zipped else ["legacy-count"]
    op = rng.choice(ops)
    case = Case("pth", "pth-" + op, f"fixture-{layout}.pth")
    case.detail = layout
    if op in BYTE_MUTATIONS:
        out = BYTE_MUTATIONS[op](rng, blob)
    elif op == "hostile":
        what, pkl = hostile_pickle(rng, case_marker())
        case.detail += f", {what}"
        if zipped:
            out = zip_build([(n, pkl if n.endswith("data.pkl") else d) for n, d in zip_records(blob)])
        else:
            out = pkl + blob[rng.choice([0, 0, len(pkl)]):] if rng.random() < 0.5 else blob[:rng.randrange(len(blob))] + pkl
    elif op == "legacy-count":
        # The int64 element count before a storage's bytes.
        at = rng.randrange(max(1, len(blob) - 8))
        out = blob[:at] + struct.pack("<q", rng.choice([-1, 0, 1 << 40, (1 << 63) - 1])) + blob[at + 8:]
    else:
        records = zip_records(blob)
        pkl_i = next(i for i, (n, _) in enumerate(records) if n.endswith("data.pkl"))
        storages = [i for i, (n, _) in enumerate(records) if "/data/" in n]
        if op == "pickle-op":
            name, pkl = records[pkl_i]
            pkl = bytearray(pkl)
            for _ in range(rng.choice([1, 1, 2, 5])):
                at = rng.randrange(len(pkl))
                choice = rng.random()
                if choice < 0.4:
                    pkl[at] = rng.choice(PICKLE_OPS)
                elif choice < 0.7:
                    pkl[at:at] = bytes([rng.choice(PICKLE_OPS)])
                else:
                    del pkl[at]
            records[pkl_i] = (name, bytes(pkl))
        elif op == "pickle-cut":
            name, pkl = records[pkl_i]
            records[pkl_i] = (name, pkl[:rng.randrange(len(pkl))])
        elif op == "storage-cut":
            i = rng.choice(storages)
            records[i] = (records[i][0], records[i][1][:rng.randrange(len(records[i][1]) + 1)])
        elif op == "storage-missing":
            del records[rng.choice(storages)]
        elif op == "rename":
            i = rng.randrange(len(records))
            records[i] = (records[i][0] + rng.choice(["x", "/", ""]) + rng.choice(["", "data.pkl"]), records[i][1])
        elif op == "traversal":
            i = rng.choice([pkl_i] + storages)
            records[i] = (rng.choice(["../", "../../", "/", "a/../../"]) + records[i][0], records[i][1])
        out = zip_build(records, deflate=[records[i][0] for i in storages + [pkl_i] if rng.random() < 0.5] if op == "compressed" else ())
    case.weights = rng.choice(["weights.pth", "weights.pth", "weights.pt", "weights"])
    case.files[case.weights] = out
    case.input = "input.png"
    case.files[case.input] = seeds.images["small-rgb8.png"]
    return case


def case_marker():
    """Where a hostile pickle's command would leave a file (checked after every run)."""
    return Path(tempfile.gettempdir()) / "dreamvid-fuzz-pwned"


MAKERS = {"image": image_case, "video": video_case, "preset": preset_case, "safetensors": safetensors_case, "pth": pth_case}


def make_case(seed, index, kinds, seeds):
    rng = random.Random(f"dreamvid-fuzz:{seed}:{index}")
    kind = kinds[index % len(kinds)]
    case = MAKERS[kind](rng, seeds)
    case.index = index
    return case


# ---------------------------------------------------------------------------------------------
# running a case


def snapshot(folder):
    """{relative name: sha256 or 'dir' or 'link'} of everything under folder."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in dirnames:
            p = Path(dirpath) / d
            out[str(p.relative_to(folder))] = "link" if p.is_symlink() else "dir"
        for f in filenames:
            p = Path(dirpath) / f
            rel = str(p.relative_to(folder))
            out[rel] = "link:" + os.readlink(p) if p.is_symlink() else sha256(p)
    return out


def valid_output(path):
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        size = path.stat().st_size
    except OSError:
        return False, "missing"
    if size == 0:
        return False, "empty"
    suffix = path.suffix.lower()
    if suffix == ".png" and not head.startswith(b"\x89PNG\r\n\x1a\n"):
        return False, "not a PNG"
    if suffix in (".jpg", ".jpeg") and not head.startswith(b"\xff\xd8\xff"):
        return False, "not a JPEG"
    if suffix in (".mp4", ".mov") and head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return False, "not an MP4/MOV"
    if suffix == ".mkv" and not head.startswith(b"\x1a\x45\xdf\xa3"):
        return False, "not a Matroska file"
    return True, ""


def limit_child(mem_mb):
    def apply():
        if mem_mb > 0:
            lim = mem_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class Runner:
    def __init__(self, cfg, seeds, work):
        self.cfg, self.seeds, self.work = cfg, seeds, work
        self.env = dict(os.environ)
        self.env.pop("RUST_BACKTRACE", None)
        self.env["RUST_BACKTRACE"] = "0"
        self.env["DREAMVID_WEIGHTS_DIR"] = str(work / "no-weights")
        (work / "no-weights").mkdir(exist_ok=True)
        if cfg["threads"]:
            self.env["RAYON_NUM_THREADS"] = str(cfg["threads"])
        self.weights_sha = sha256(seeds.weights_path)

    def argv(self, case, binary):
        weights = f"in/{case.weights}" if case.weights else str(self.seeds.weights_path)
        args = [binary]
        if case.command == "image":
            args.append("image")
        args += [f"in/{case.input}", "-o", case.output, "--model", "vgg19", "--weights", weights]
        if case.layer_arg:
            args += ["--layer", "20"]
        args += ["--octaves", "1", "--iterations", "1"]
        if case.preset:
            args += ["--preset", f"in/{case.preset}"]
        return args + case.extra_args

    def run(self, case):
        folder = self.work / f"case-{case.index}"
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "in").mkdir(parents=True)
        (folder / "out").mkdir()
        for name, data in case.files.items():
            (folder / "in" / name).write_bytes(data)
        out = folder / case.output
        setup = case.output_setup
        if setup == "same":
            case.output = f"in/{case.input}"
        elif setup in ("hardlink", "symlink"):
            # the output path is another name of the input (same extension, so it is accepted)
            case.output = f"out/out{Path(case.input).suffix}"
            link = folder / case.output
            if setup == "hardlink":
                os.link(folder / "in" / case.input, link)
            else:
                os.symlink(folder / "in" / case.input, link)
        elif setup == "stale":
            out.write_bytes(b"stale output from an earlier run\n")
        elif setup == "outdir-missing":
            case.output = "out/missing/" + Path(case.output).name
        elif setup == "output-is-dir":
            # A folder that holds something: an existing empty folder is a valid target for
            # PNG frames, a full one must be refused and left as it was.
            out.mkdir()
            (out / "kept.txt").write_bytes(b"not to be touched\n")
        out = folder / case.output
        before = snapshot(folder)
        argv = self.argv(case, str(self.cfg["binary"]))
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=folder, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=limit_child(self.cfg["mem_mb"]))
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=time_bound(self.cfg, case))
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            stdout, stderr = proc.communicate()
        wall = time.monotonic() - t0
        rc = proc.returncode
        err = stderr.decode("utf-8", errors="replace")
        after = snapshot(folder)
        names = set(case.files) | {Path(case.output).name}
        res = {"names": sorted(names), "case": case.index, "kind": case.kind, "mutation": case.mutation, "detail": case.describe(), "rc": rc, "wall": round(wall, 3), "stderr": err, "findings": [], "argv": argv, "folder": folder}
        f = res["findings"]
        out_rel = str(Path(case.output))
        existed_before = out_rel in before
        if timed_out:
            f.append(("timeout", f"ran over {time_bound(self.cfg, case):.0f} s"))
        elif rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = "?"
            f.append(("signal", f"killed by signal {-rc} ({name})"))
        if "panicked" in err or rc == 101:
            f.append(("panic", panic_site(err)))
        if case_marker().exists():
            f.append(("ran-code", "a pickle's command ran: it created " + str(case_marker())))
            case_marker().unlink()
        if not timed_out:
            for name, h in before.items():
                if name.startswith("in/") and after.get(name) != h:
                    f.append(("input-modified", f"{name} {'deleted' if name not in after else 'changed'}"))
            if sha256(self.seeds.weights_path) != self.weights_sha:
                f.append(("input-modified", "the fixture weights changed"))
                self.seeds.weights_path.write_bytes(self.seeds.weights)
                self.weights_sha = sha256(self.seeds.weights_path)
            inp = case.files.get(case.input, b"")
            if rc == 0 and case.command == "image" and is_png(inp) and len(inp) > 25 and inp[25] in (4, 6) and out.is_file():
                head = out.read_bytes()[:26]
                res["alpha_dropped"] = not (is_png(head) and len(head) > 25 and head[25] in (4, 6))
            for name, h in before.items():
                if name.startswith(out_rel + "/") and after.get(name) != h:
                    f.append(("output-left", f"{name}, in the folder given as output, changed"))
            new = sorted(set(after) - set(before))
            allowed = set()
            if rc == 0:
                allowed = {out_rel, out_rel + ".dreamvid.toml"}
                if setup == "outdir-missing":
                    allowed |= {str(Path(out_rel).parent)}
                ok, why = valid_output(out)
                if not ok:
                    f.append(("no-output", f"exit 0 but the output {out_rel} is {why}"))
            else:
                if existed_before and after.get(out_rel) != before.get(out_rel) and not any(k == "input-modified" for k, _ in f):
                    f.append(("output-left", f"{out_rel} changed after a failure"))
                if not existed_before and out_rel in after:
                    f.append(("output-left", f"{out_rel} exists after a failure"))
                # checkpoints kept for --resume are by design when the error says so
                ck = str(Path(out_rel).parent / f".{Path(out_rel).name}.dreamvid-frames")
                if "--resume" in err:
                    allowed |= {n for n in new if n == ck or n.startswith(ck + "/")}
                if not re.search(r"(?m)^error:", err) and not timed_out and rc > 0 and rc != 101:
                    f.append(("unclear-error", f"exit {rc} without an `error:` line"))
            left = [n for n in new if n not in allowed and n != out_rel]
            for n in left:
                if n.startswith("in/"):
                    f.append(("wrote-beside-input", f"{n} appeared beside the input"))
                elif Path(n).name.startswith("."):
                    f.append(("temp-left", f"{n} left after exit {rc}"))
                elif rc != 0:
                    f.append(("output-left", f"{n} left after exit {rc}"))
                else:
                    f.append(("extra-output", f"{n} written beside the output"))
        return res


def clean(text):
    """Text safe to print: control characters (other than tab) escaped."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", lambda m: f"\\x{ord(m.group(0)):02x}", text)


def panic_site(err):
    m = re.search(r"panicked at ([^\n]+?):(\d+):(\d+):?\s*\n?([^\n]*)", err)
    if m:
        return f"{m.group(1)}:{m.group(2)}: {m.group(4).strip()}"
    m = re.search(r"panicked[^\n]*", err)
    return m.group(0) if m else "exit 101"


def normalise(text, folder):
    text = text.replace(str(folder), "<case>")
    text = re.sub(r"/tmp/dreamvid-fuzz-[^/\s]+", "<tmp>", text)
    text = re.sub(r"\d+", "N", text)
    return text[:160]


def signature(kind_of_finding, detail, res):
    first = next((l for l in res["stderr"].splitlines() if l.strip()), "")
    if kind_of_finding == "panic":
        site = re.sub(r":\s.*", "", detail)
        msg = re.sub(r"\d+", "N", detail.split(": ", 1)[-1])[:80]
        return f"panic at {site}: {msg}"
    if kind_of_finding in ("signal", "timeout"):
        last = [l for l in res["stderr"].splitlines() if l.strip()]
        return f"{kind_of_finding} ({res['kind']}): {normalise(detail, res['folder'])} | {normalise(last[-1] if last else '', res['folder'])[:80]}"
    if kind_of_finding in ("input-modified", "output-left", "temp-left", "no-output", "extra-output", "wrote-beside-input"):
        where = re.sub(r"(in|out)/\S+", "PATH", detail)
        return f"{kind_of_finding} ({res['kind']}, {res['mutation']}): {normalise(where, res['folder'])}"
    return f"{kind_of_finding}: {normalise(first, res['folder'])}"


# ---------------------------------------------------------------------------------------------


def copy_binary(src, dst, log):
    """Copies the binary under test (it may be being rebuilt: retry for a minute)."""
    deadline = time.monotonic() + 90
    while True:
        try:
            if src.exists():
                size = src.stat().st_size
                time.sleep(0.5)
                if src.stat().st_size == size:
                    shutil.copy2(src, dst)
                    r = subprocess.run([str(dst), "--version"], capture_output=True, timeout=30)
                    if r.returncode == 0:
                        return r.stdout.decode().strip()
        except (OSError, subprocess.SubprocessError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"error: no working dreamvid binary at {src} (build it with `cargo build --release`, or set DREAMVID)")
        log(f"waiting for {src} ...")
        time.sleep(5)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `scripts/fuzz | head` ends quietly
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        text = (REPO / "scripts" / "fuzz").read_text().split("\n")
        print("\n".join(l[2:] for l in text[1:] if l.startswith("#")))
        return 0
    kinds = [k.strip() for k in os.environ.get("KINDS", ",".join(KINDS_ALL)).split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS_ALL]
    if bad:
        print(f"error: KINDS: unknown kind(s) {', '.join(bad)}; choose from {', '.join(KINDS_ALL)}", file=sys.stderr)
        return 2
    cfg = {
        "seed": env_int("SEED", 1),
        "seconds": env_int("SECONDS", 60),
        "cases": env_int("CASES", 0),
        "case": os.environ.get("CASE", "").strip(),
        "timeout": env_float("TIMEOUT", 20.0),
        "per_megapixel": env_float("PER_MEGAPIXEL", 2.0),
        "threads": env_int("THREADS", 0),
        "mem_mb": env_int("MEM_MB", 4096),
        "keep": os.environ.get("KEEP", "") not in ("", "0"),
        "verbose": os.environ.get("VERBOSE", "") not in ("", "0"),
        "report": os.environ.get("REPORT", ""),
        "dry": os.environ.get("DRY", "") not in ("", "0"),  # make the cases, run nothing
    }
    dreamvid = Path(os.environ.get("DREAMVID", "target/release/dreamvid"))
    dreamvid = dreamvid if dreamvid.is_absolute() else (Path.cwd() / dreamvid)
    make_clip = Path(os.environ.get("MAKE_CLIP", "target/release/examples/make_clip"))
    make_clip = make_clip if make_clip.is_absolute() else (Path.cwd() / make_clip)
    findings_dir = Path(os.environ.get("FINDINGS_DIR", str(REPO / "out" / "fuzz-findings")))

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="dreamvid-fuzz-"))
    try:
        return campaign(cfg, kinds, dreamvid, make_clip, findings_dir, work, log)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)


def campaign(cfg, kinds, dreamvid, make_clip, findings_dir, work, log):
    t_setup = time.monotonic()
    binary = work / "dreamvid"
    version = copy_binary(dreamvid, binary, log)
    cfg["binary"] = binary
    seeds_dir = work / "seeds"
    seeds_dir.mkdir()
    seeds = Seeds(seeds_dir, binary, make_clip, log)
    # The fixture weights must load, or every case would only test the loader's error.
    r = subprocess.run([str(binary), "layers", "--model", "vgg19", "--weights", str(seeds.weights_path), "--size", "64"], capture_output=True, timeout=60)
    if r.returncode != 0 or b"features.36" not in r.stdout:
        log("error: the binary does not load the fixture VGG19:\n" + r.stderr.decode(errors="replace"))
        return 2
    if "video" in kinds and not seeds.videos:
        log("warning: no seed videos; the video kind is skipped")
        kinds = [k for k in kinds if k != "video"]
    if not kinds:
        log("error: nothing to fuzz")
        return 2
    budget = f"case {cfg['case']}" if cfg["case"] else f"{cfg['seconds']} s" + (f", at most {cfg['cases']} cases" if cfg["cases"] else "")
    print(f"dreamvid fuzz: {version} ({dreamvid}), seed {cfg['seed']}, kinds {','.join(kinds)}, "
          f"{budget}, "
          f"timeout {cfg['timeout']} s per case", flush=True)
    digest = hashlib.sha256()
    for name in sorted(seeds.images):
        digest.update(seeds.images[name])
    for name in sorted(seeds.videos):
        digest.update(seeds.videos[name])
    digest.update(seeds.weights)
    print(f"seeds: {len(seeds.images)} images, {len(seeds.videos)} videos, {len(seeds.presets)} presets, fixture weights "
          f"({len(seeds.weights)} bytes); seed digest {digest.hexdigest()[:12]}; setup {time.monotonic() - t_setup:.1f} s", flush=True)

    runner = Runner(cfg, seeds, work)
    results = []
    start = time.monotonic()
    indices = [int(cfg["case"])] if cfg["case"] else None
    i = 0
    while True:
        if indices is not None:
            if not indices:
                break
            index = indices.pop(0)
        else:
            if cfg["cases"] and i >= cfg["cases"]:
                break
            if time.monotonic() - start >= cfg["seconds"]:
                break
            index = i
        i += 1
        case = make_case(cfg["seed"], index, kinds, seeds)
        if cfg["dry"]:
            results.append({"case": index, "kind": case.kind, "mutation": case.mutation, "detail": case.describe(), "rc": 0, "stderr": "", "findings": []})
            if cfg["verbose"]:
                print(f"[{index}] {case.kind} {case.describe()} {sorted((n, len(d)) for n, d in case.files.items())}")
            continue
        res = runner.run(case)
        results.append(res)
        if res["findings"] or cfg["verbose"] or indices is not None:
            tag = "FINDING" if res["findings"] else "ok"
            first = clean(next((l for l in res["stderr"].splitlines() if l.strip()), ""))
            print(f"[{index}] {tag} {case.kind} {case.describe()}: exit {res['rc']} in {res['wall']:.2f} s"
                  + "".join(f"\n    {k}: {d}" for k, d in res["findings"])
                  + (f"\n    stderr: {first[:200]}" if first else ""), flush=True)
            if indices is not None:
                print("    command (in the case folder): " + shlex.join(display_argv(res["argv"], dreamvid, seeds)))
                print("    stderr:\n" + "\n".join("      " + clean(l) for l in res["stderr"].splitlines()[:20]))
        if res["findings"] and cfg["keep"]:
            keep_finding(res, findings_dir, dreamvid, seeds, cfg)
        shutil.rmtree(res["folder"], ignore_errors=True)
        if indices is None and i % 200 == 0:
            print(f"... {i} cases, {sum(bool(r['findings']) for r in results)} with findings, {time.monotonic() - start:.0f} s", flush=True)
    elapsed = time.monotonic() - start
    return summary(results, cfg, kinds, elapsed, dreamvid, seeds, findings_dir)


def display_argv(argv, dreamvid, seeds):
    out = [str(dreamvid)] + list(argv[1:])
    return [a.replace(str(seeds.weights_path), "fixture-vgg19.safetensors") for a in out]


def keep_finding(res, findings_dir, dreamvid, seeds, cfg):
    dest = findings_dir / f"seed{cfg['seed']}-case{res['case']}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(res["folder"] / "in", dest / "in", symlinks=True)
    fixture = findings_dir / "fixture-vgg19.safetensors"
    if not fixture.exists():
        fixture.write_bytes(seeds.weights)
    argv = display_argv(res["argv"], dreamvid, seeds)
    argv = [("../fixture-vgg19.safetensors" if a == "fixture-vgg19.safetensors" else a) for a in argv]
    (dest / "repro.sh").write_text(
        "#!/usr/bin/env bash\n"
        f"# {res['kind']}: {res['detail']}\n"
        + "".join(f"# finding: {k}: {d}\n" for k, d in res["findings"])
        + f"# also: SEED={cfg['seed']} CASE={res['case']} scripts/fuzz\n"
        'cd "$(dirname "$0")" && rm -rf out && mkdir -p out\n'
        + shlex.join(argv)
        + "\n"
    )
    os.chmod(dest / "repro.sh", 0o755)
    (dest / "stderr.txt").write_text(res["stderr"])


def summary(results, cfg, kinds, elapsed, dreamvid, seeds, findings_dir):
    print()
    print(f"{len(results)} cases in {elapsed:.0f} s (seed {cfg['seed']})")
    print()
    header = f"{'kind':<12} {'cases':>6} {'exit 0':>7} {'exit 1':>7} {'other':>6} {'findings':>9}"
    print(header)
    print("-" * len(header))
    tot = [0, 0, 0, 0, 0]
    for kind in kinds + ["total"]:
        rs = results if kind == "total" else [r for r in results if r["kind"] == kind]
        row = [len(rs), sum(r["rc"] == 0 for r in rs), sum(r["rc"] == 1 for r in rs), sum(r["rc"] not in (0, 1) for r in rs), sum(bool(r["findings"]) for r in rs)]
        print(f"{kind:<12} {row[0]:>6} {row[1]:>7} {row[2]:>7} {row[3]:>6} {row[4]:>9}")
    print()
    muts = {}
    for r in results:
        m = muts.setdefault((r["kind"], r["mutation"]), [0, 0, 0, 0])
        m[0] += 1
        m[1] += r["rc"] == 0
        m[2] += r["rc"] == 1
        m[3] += bool(r["findings"])
    print(f"{'kind':<12} {'mutation':<18} {'cases':>6} {'exit 0':>7} {'exit 1':>7} {'findings':>9}")
    for (kind, mut), m in sorted(muts.items()):
        print(f"{kind:<12} {mut:<18} {m[0]:>6} {m[1]:>7} {m[2]:>7} {m[3]:>9}")
    if cfg["verbose"]:
        errs = {}
        for r in results:
            if r["rc"] == 1:
                line = next((l for l in r["stderr"].splitlines() if l.startswith("error:")), "")
                key = (r["kind"], normalise(line, r["folder"]))
                errs[key] = errs.get(key, 0) + 1
        print("\nmost frequent errors:")
        for (kind, line), n in sorted(errs.items(), key=lambda kv: -kv[1])[:25]:
            print(f"  {n:>5}  {kind:<12} {clean(line)}")
    # Observations that are not failures by this campaign's rules, but worth a look.
    notes = {}
    for r in results:
        if r["findings"] or "names" not in r:
            continue
        err = r["stderr"]
        if r["rc"] == 1 and not any(n in err for n in r["names"]):
            line = next((l for l in err.splitlines() if l.startswith("error:")), "")
            notes.setdefault(("error names no file", normalise(line, r["folder"])[:120]), []).append(r)
        m = re.search(r"^wrote \S+ \((\d+) frames", err, re.M)
        if r["rc"] == 0 and r["kind"] == "video" and m and int(m.group(1)) < 6 and r["mutation"] != "image-as-video":
            notes.setdefault(("video exit 0 with fewer frames than the 6 of the seed", ""), []).append(r)
        if r.get("alpha_dropped"):
            notes.setdefault(("exit 0 but the alpha channel of the input PNG is gone from the output", ""), []).append(r)
        if r["rc"] == 0 and r["mutation"] == "output-path" and re.search(r"\((same|hardlink|symlink)\)", r["detail"]):
            notes.setdefault(("exit 0 with the output path the input itself or a link to it (not refused)", ""), []).append(r)
        if r["rc"] == 0 and r["mutation"] == "st-nan-weights" and re.search(r"nan|inf|mixed", r["detail"]):
            notes.setdefault(("exit 0 with NaN/inf weights (the dream is then NaN/garbage?)", ""), []).append(r)
    if notes:
        print("\nnotes (not findings):")
        for (what, line), rs in sorted(notes.items(), key=lambda kv: -len(kv[1]))[:20]:
            print(f"  {len(rs):>5}  {what}{': ' + clean(line) if line else ''}  (e.g. case {rs[0]['case']}: {clean(rs[0]['detail'][:80])})")
    groups = {}
    for r in results:
        for k, d in r["findings"]:
            groups.setdefault(signature(k, d, r), []).append((r, k, d))
    if cfg["report"]:
        Path(cfg["report"]).write_text(json.dumps([{k: v for k, v in r.items() if k not in ("folder", "names")} for r in results], indent=1))
    if not groups:
        print("\nno findings")
        return 0
    print(f"\n{sum(bool(r['findings']) for r in results)} cases with findings, {len(groups)} distinct:")
    for n, (sig, items) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0][0]["case"]), 1):
        r, k, d = items[0]
        print(f"\n#{n} {sig}  [{len(items)} case(s)]")
        print(f"  first: case {r['case']} ({r['kind']}, {clean(r['detail'])}): {k}: {clean(d)}")
        print("  command: " + shlex.join(display_argv(r["argv"], dreamvid, seeds)))
        print(f"  replay:  SEED={cfg['seed']} CASE={r['case']} scripts/fuzz" + (f"   (kept in {findings_dir}/seed{cfg['seed']}-case{r['case']})" if cfg["keep"] else ""))
        lines = [l for l in r["stderr"].splitlines() if l.strip()][:4]
        for l in lines:
            print(f"  | {clean(l[:200])}")
        for r2, k2, d2 in items[1:12]:
            print(f"  also case {r2['case']}: {clean(r2['detail'][:140])}")
        if len(items) > 12:
            print(f"  ... and {len(items) - 12} more")
    return 1


if __name__ == "__main__":
    sys.exit(main())
