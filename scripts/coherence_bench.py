#!/usr/bin/env python3
"""Temporal coherence of dreamvid's video renders: the measuring side of scripts/coherence-bench.

The metric is the flow-based warping error of Lai et al., "Learning Blind Video Temporal
Consistency" (ECCV 2018), with the occlusion mask of Ruder et al., "Artistic Style Transfer for
Videos" (GCPR 2016):

    E_warp(V) = 1/|P| * sum over pairs (t, t+1) in P of
                sum_i M_t(i) * ||V_{t+1}(i) - warp(V_t)(i)||^2  /  sum_i M_t(i)

- V_t are RGB frames in [0, 1]; ||.||^2 sums the squares over the three channels (Lai et al.'s
  released evaluation code divides by the channel count as well, so its numbers are a third of
  these; ratios are the same).
- warp(V_t) samples V_t bilinearly (cv2.remap) at i + w_hat(i), where w_hat is the backward
  flow from frame t+1 to frame t. The flow is computed on the SOURCE frames, never on the
  dreamed ones (a dream that invents motion must not excuse itself), and never taken from
  dreamvid: it is OpenCV's Farneback on the grey source frames with the parameters in
  FARNEBACK below.
- M_t(i) = 1 where pixel i of frame t+1 is visible in frame t by Ruder's forward/backward test:
  with w_tilde the forward flow (t -> t+1) sampled bilinearly at i + w_hat(i),
  |w_tilde + w_hat|^2 <= 0.01 (|w_tilde|^2 + |w_hat|^2) + 0.5, and i + w_hat(i) inside the frame.
  (Ruder's motion-boundary test is not used.)
- P holds the pairs of consecutive frames that are not across a scene cut. A cut is detected on
  the source frames when EITHER the mean absolute luma difference exceeds 0.25 (luma in [0, 1])
  OR the Bhattacharyya distance of the two frames' 64-bin grey
  histograms exceeds 0.2. The histogram test is needed because real cuts (Megamind.avi's) change
  the mean luma by only 0.13-0.18; on these clips ordinary frame pairs stay below 0.11 and cuts
  lie above 0.22.

Reported per clip and render (and per shot, a shot being a run of frames between cuts):
E_warp x 1e3; dE = E_warp(render) - E_warp(source), the flicker and swimming the dream adds
(E_warp(source) is not zero: flow errors, lighting, noise); dE relative to the `none` and `blend`
renders; strength = mean |render - source| over all pixels and channels (0..255); drift = the
change, from the first 10 frames to the last 10 (of a shot: min(10, half its length)), of the
mean luma difference render - source (0..255 units); and seconds per frame of the dreamvid call.
"""

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

FARNEBACK = dict(pyr_scale=0.5, levels=5, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
LUMA_CUT = 0.25  # mean |luma difference| in [0, 1]
HIST_CUT = 0.2  # Bhattacharyya distance of 64-bin grey histograms
HIST_BINS = 64
DREAMVID_CUT = 0.3  # dreamvid's default scene_cut: histogram distance + mean luma difference
EDGE = 10  # frames averaged at each end for the brightness drift
DATA = Path(".coherence-data")
SAMPLE_CLIPS = ("vtest", "Megamind", "tree")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Clips


def parse_clip(spec):
    """`NAME[+pan][@START]` (a sample clip, or a path to any video) -> (label, source path,
    start, pan). `+pan` films the clip with a moving camera: a window 5/6 of the frame's size
    slides across it (see PAN), so that camera motion is measured too (the sample clips are all
    shot from a fixed camera)."""
    base, _, start = spec.partition("@")
    start = int(start) if start else 0
    base, pan = (base[: -len("+pan")], True) if base.endswith("+pan") else (base, False)
    path = Path(base)
    if base in SAMPLE_CLIPS:
        path = DATA / "src" / f"{base}.avi"
    elif not path.is_file():
        die(f"no clip `{base}`: use one of {', '.join(SAMPLE_CLIPS)} or a path to a video")
    label = path.stem + ("+pan" if pan else "") + (f"@{start}" if start else "")
    return label, path, start, pan


def read_video(path, limit=None):
    """All frames of `path` as uint8 BGR arrays (OpenCV's decoder), and its frame rate."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        die(f"OpenCV cannot open {path}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while limit is None or len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps


def even_size(w, h, max_width):
    if w > max_width:
        h = h * max_width / w
        w = max_width
    return int(w) // 2 * 2, int(round(h / 2)) * 2


# The `+pan` camera: pixels per frame (x, y) in the source's resolution, sub-pixel, reversing
# at the edges of the room the 5/6 window leaves.
PAN = (1.3, 0.45)


def pan_window(frame, t):
    """Frame `t` of the moving camera: a 5/6-size window at a position that moves by PAN each
    frame (bicubic, so the motion is sub-pixel)."""
    h, w = frame.shape[:2]
    cw, ch = w * 5 // 6, h * 5 // 6

    def bounce(v, room):
        v = v % (2 * room)
        return v if v <= room else 2 * room - v

    x, y = bounce(PAN[0] * t, w - cw - 1), bounce(PAN[1] * t, h - ch - 1)
    m = np.float32([[1, 0, -x], [0, 1, -y]])
    return cv2.warpAffine(frame, m, (cw, ch), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def prepare_clip(label, src, start, frames, max_width, pan=False):
    """Cuts `frames` frames from `start` (filmed with the moving camera of `pan_window` if
    `pan`) and scales them to at most `max_width` (even sides), losslessly (FFV1 in Matroska,
    which OpenCV writes as BGR, so decoding gives back exactly the frames written). Both
    dreamvid and the metric read this file."""
    tag = "-pan" if pan else ""
    out = DATA / "clips" / f"{src.stem}{tag}-s{start}-n{frames}-w{max_width}.mkv"
    if out.is_file() and out.stat().st_mtime > src.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        die(f"OpenCV cannot open {src}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    for _ in range(start):
        if not cap.grab():
            die(f"{src} has fewer than {start} frames")
    picked = []
    while len(picked) < frames:
        ok, frame = cap.read()
        if not ok:
            break
        picked.append(frame)
    cap.release()
    if len(picked) < 2:
        die(f"{src} has no frames after frame {start}")
    if len(picked) < frames:
        log(f"  {label}: OpenCV decodes only {len(picked)} frames from frame {start} (asked for {frames})")
    if pan:
        picked = [pan_window(f, t) for t, f in enumerate(picked)]
    h, w = picked[0].shape[:2]
    size = even_size(w, h, max_width)
    tmp = out.with_suffix(".tmp.mkv")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"FFV1"), fps, size)
    if not writer.isOpened():
        die("OpenCV cannot write FFV1 video")
    for frame in picked:
        if (frame.shape[1], frame.shape[0]) != size:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        writer.write(frame)
    writer.release()
    back, _ = read_video(tmp)
    if len(back) != len(picked):
        die(f"the cut {tmp} decodes to {len(back)} frames, not {len(picked)}")
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------------------------
# Renders


def has_flag(args, flag):
    return any(a == flag or a.startswith(flag + "=") for a in args)


def render(dreamvid, clip, name, variant_args, opts):
    """Runs dreamvid on `clip` (unless an up-to-date output exists); returns (path, seconds)."""
    args = list(variant_args)
    if not has_flag(args, "--preset"):
        args += ["--preset", opts.preset]
    if not has_flag(args, "--crf"):
        args += ["--crf", str(opts.crf)]
    # One file per binary and argument list, so switching DREAMVID between builds never reuses
    # another build's render (the mtime test below catches rebuilds in place).
    key = hashlib.sha256(json.dumps([os.path.realpath(dreamvid)] + args).encode()).hexdigest()[:8]
    out = DATA / "renders" / clip.stem / f"{name}-{key}.mp4"
    timing = out.with_name(out.name + ".time.json")
    newest_input = max(Path(dreamvid).stat().st_mtime, clip.stat().st_mtime)
    if not opts.force and out.is_file() and timing.is_file() and out.stat().st_mtime > newest_input:
        log(f"  {name}: up to date ({out})")
        return out, args, json.loads(timing.read_text())["seconds"]
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [dreamvid, str(clip), "-o", str(out)] + args
    log(f"  {name}: {shlex.join(cmd)}")
    logfile = out.with_name(out.name + ".log")
    t0 = time.monotonic()
    with open(logfile, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - t0
    if rc != 0 or not out.is_file():
        tail = logfile.read_text().splitlines()[-15:]
        die(f"dreamvid failed (exit {rc}) on {clip} for {name}:\n    " + "\n    ".join(tail))
    timing.write_text(json.dumps({"seconds": seconds, "args": args}))
    log(f"  {name}: {seconds:.1f} s")
    return out, args, seconds


# ---------------------------------------------------------------------------------------------
# The metric


def grey(frame):
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def farneback(a, b):
    """Flow at the pixels of `a` pointing into `b`: a(x) ~ b(x + flow(x))."""
    return cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK)


def pair_geometry(g_t, g_t1, grid):
    """Sampling maps into frame t for the pixels of frame t+1, and Ruder's mask M_t."""
    xs, ys = grid
    back = farneback(g_t1, g_t)  # w_hat: t+1 -> t
    fwd = farneback(g_t, g_t1)  # t -> t+1
    mx, my = xs + back[..., 0], ys + back[..., 1]
    h, w = g_t.shape
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    fwd_at = cv2.remap(fwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lhs = ((fwd_at + back) ** 2).sum(-1)
    rhs = 0.01 * ((fwd_at**2).sum(-1) + (back**2).sum(-1)) + 0.5
    return mx, my, inside & (lhs <= rhs), back


def pair_error(v_t, v_t1, mx, my, mask):
    """sum_i M(i) ||V_{t+1}(i) - warp(V_t)(i)||^2 / sum_i M(i), RGB in [0, 1]."""
    prev = v_t.astype(np.float32) / 255.0
    nxt = v_t1.astype(np.float32) / 255.0
    warped = cv2.remap(prev, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    err = ((nxt - warped) ** 2).sum(-1)
    return float(err[mask].sum(dtype=np.float64) / mask.sum())


def grey_hist(g):
    h = cv2.calcHist([g], [0], None, [HIST_BINS], [0, 256])
    return cv2.normalize(h, h, 1, 0, cv2.NORM_L1)


def detect_cuts(greys):
    """Pairs (t, t+1) of the source that cross a scene cut, with the tests' values."""
    cuts = []
    for t in range(len(greys) - 1):
        a, b = greys[t], greys[t + 1]
        luma = float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255.0)
        hist = float(cv2.compareHist(grey_hist(a), grey_hist(b), cv2.HISTCMP_BHATTACHARYYA))
        if luma > LUMA_CUT or hist > HIST_CUT:
            cuts.append({"pair": t, "luma_diff": luma, "hist_dist": hist, "dreamvid_sees_it": luma + hist > DREAMVID_CUT})
    return cuts


def mean_luma(frame):
    b, g, r = frame.reshape(-1, 3).mean(0, dtype=np.float64)
    return 0.114 * b + 0.587 * g + 0.299 * r


def drift(luma_diff, a, b):
    """Change of the mean luma difference (render - source) from the start to the end of the
    frames a..b (inclusive): first/last min(EDGE, half the length) frames."""
    k = max(1, min(EDGE, (b - a + 1) // 2))
    start, end = float(np.mean(luma_diff[a : a + k])), float(np.mean(luma_diff[b - k + 1 : b + 1]))
    return {"start": start, "end": end, "change": end - start}


def measure(src_frames, renders, want_motion_maps=False):
    """E_warp per pair for the source and every render, cuts, shots and per-frame stats."""
    n = len(src_frames)
    greys = [grey(f) for f in src_frames]
    h, w = greys[0].shape
    grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    cuts = detect_cuts(greys)
    cut_pairs = {c["pair"] for c in cuts}
    bounds = [0] + [c["pair"] + 1 for c in cuts] + [n]
    shots = [(a, b - 1) for a, b in zip(bounds, bounds[1:])]
    videos = {"source": src_frames, **renders}
    errors = {name: [None] * (n - 1) for name in videos}
    motion = {"mean_flow": [], "global_flow": [], "visible": []}
    motion_sum = np.zeros((h, w), np.float64)
    motion_maps = [None] * (n - 1)
    for t in range(n - 1):
        if t in cut_pairs:
            continue
        mx, my, mask, back = pair_geometry(greys[t], greys[t + 1], grid)
        mag = np.hypot(back[..., 0], back[..., 1])
        motion_sum += mag
        if want_motion_maps:
            motion_maps[t] = mag
        motion["mean_flow"].append(float(mag.mean()))
        motion["global_flow"].append(float(np.hypot(np.median(back[..., 0]), np.median(back[..., 1]))))
        motion["visible"].append(float(mask.mean()))
        if mask.sum() == 0:
            continue
        for name, frames in videos.items():
            errors[name][t] = pair_error(frames[t], frames[t + 1], mx, my, mask)
        if (t + 1) % 10 == 0:
            log(f"    pair {t + 1}/{n - 1}")
    per_frame = {}
    src_luma = np.array([mean_luma(f) for f in src_frames])
    for name, frames in renders.items():
        strength = np.array(
            [np.abs(o.astype(np.int16) - s.astype(np.int16)).mean() for o, s in zip(frames, src_frames)]
        )
        luma_diff = np.array([mean_luma(f) for f in frames]) - src_luma
        per_frame[name] = (strength, luma_diff)
    return {
        "cuts": cuts,
        "shots": shots,
        "errors": errors,
        "per_frame": per_frame,
        "motion": {k: float(np.mean(v)) if v else 0.0 for k, v in motion.items()},
        "motion_sum": motion_sum,
        "motion_maps": motion_maps,
    }


def mean_error(errs, a, b):
    vals = [e for e in errs[a:b] if e is not None]  # pairs a..b-1
    return float(np.mean(vals)) if vals else None


def summarise(m, names, seconds, nframes):
    """Numbers for the whole clip and for each shot."""
    scopes = [("clip", 0, nframes - 1)] + [(f"shot {a}-{b}", a, b) for a, b in m["shots"] if b > a]
    out = []
    for label, a, b in scopes:
        e_src = mean_error(m["errors"]["source"], a, b)
        rows = {"source": {"E": e_src}}
        for name in names:
            e = mean_error(m["errors"][name], a, b)
            strength, luma_diff = m["per_frame"][name]
            rows[name] = {
                "E": e,
                "dE": None if e is None or e_src is None else e - e_src,
                "strength": float(strength[a : b + 1].mean()),
                "drift": drift(luma_diff, a, b),
                "s_per_frame": seconds[name] / nframes,
            }
        out.append({"scope": label, "first": a, "last": b, "pairs": b - a, "rows": rows})
    return out


# ---------------------------------------------------------------------------------------------
# Report


def fmt(x, spec, scale=1.0):
    return "-" if x is None else format(x * scale, spec)


def ratio(x, y):
    if x is None or y is None or y <= 1e-9:  # against a zero or negative ΔE a ratio means nothing
        return None
    return x / y


def table(clip, scopes, names):
    head = "| clip | mode | E_warp ×1e3 | ΔE ×1e3 | ΔE / ΔE(none) | ΔE / ΔE(blend) | strength | drift /255 | s/frame |"
    lines = [head, "|" + " --- |" * 9]
    shot_lines = []
    for scope in scopes:
        rows = scope["rows"]
        ref_none = rows.get("none", {}).get("dE")
        ref_blend = rows.get("blend", {}).get("dE")
        target = lines if scope["scope"] == "clip" else shot_lines
        where = clip if scope["scope"] == "clip" else f"{clip} {scope['scope']}"
        target.append(f"| {where} | source | {fmt(rows['source']['E'], '.3f', 1e3)} | | | | | | |")
        for name in names:
            r = rows[name]
            cells = [
                where,
                name,
                fmt(r["E"], ".3f", 1e3),
                fmt(r["dE"], "+.3f", 1e3),
                fmt(ratio(r["dE"], ref_none), ".2f"),
                fmt(ratio(r["dE"], ref_blend), ".2f"),
                fmt(r["strength"], ".2f"),
                fmt(r["drift"]["change"], "+.2f"),
                fmt(r["s_per_frame"], ".2f") if scope["scope"] == "clip" else "",
            ]
            target.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines)
    if len(scopes) > 2:  # more than one shot: per-shot table
        out += "\n\nper shot:\n\n" + "\n".join([head, "|" + " --- |" * 9] + shot_lines)
    elif len(scopes) == 2:
        out += "\n\n(one shot: the per-shot numbers are the clip's)"
    return out


# ---------------------------------------------------------------------------------------------
# Montage


def montage(label, src_frames, renders, names, m, path, crop=160, step=3, scale=2):
    """Crops at the region of largest source motion, 3 frames `step` apart, one row per video."""
    h, w = src_frames[0].shape[:2]
    c = min(crop, h // 2, w // 2)
    box = cv2.blur(m["motion_sum"].astype(np.float32), (c, c), borderType=cv2.BORDER_CONSTANT)
    half = c // 2
    inner = box[half : h - (c - half) + 1, half : w - (c - half) + 1]
    y, x = np.unravel_index(np.argmax(inner), inner.shape)  # top-left of the crop
    best, t0 = -1.0, None
    for a, b in m["shots"]:
        for t in range(a, b - 2 * step + 1):
            maps = [m["motion_maps"][u] for u in range(t, t + 2 * step)]
            if any(mm is None for mm in maps):
                continue
            s = sum(float(mm[y : y + c, x : x + c].mean()) for mm in maps)
            if s > best:
                best, t0 = s, t
    if t0 is None:
        log(f"  montage: {label} has no shot of {2 * step + 1} frames; skipped")
        return None
    times = [t0, t0 + step, t0 + 2 * step]
    rows = [("source", src_frames)] + [(n, renders[n]) for n in names if n != "codec"]
    tile = c * scale
    pad, label_w, head_h = 6, 150, 28
    W = label_w + len(times) * (tile + pad)
    H = head_h + len(rows) * (tile + pad)
    img = np.full((H, W, 3), 255, np.uint8)
    for j, t in enumerate(times):
        cv2.putText(img, f"frame {t}", (label_w + j * (tile + pad) + 4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, frames) in enumerate(rows):
        top = head_h + i * (tile + pad)
        cv2.putText(img, name, (8, top + tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
        for j, t in enumerate(times):
            patch = frames[t][y : y + c, x : x + c]
            patch = cv2.resize(patch, (tile, tile), interpolation=cv2.INTER_NEAREST)
            left = label_w + j * (tile + pad)
            img[top : top + tile, left : left + tile] = patch
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        die(f"cannot write {path}")
    log(f"  montage: {path} (crop {c}x{c} at x={x}, y={y}; frames {times})")
    return {"path": str(path), "x": int(x), "y": int(y), "size": int(c), "frames": times}


# ---------------------------------------------------------------------------------------------


def parse_variants(modes, variants, extra, codec_ref):
    out = []
    extra = shlex.split(extra)
    for mode in modes.split():
        out.append((mode, ["--coherence", mode] + extra))
    for item in variants.split(";"):
        if not item.strip():
            continue
        name, sep, args = item.partition(":")
        if not sep or not name.strip():
            die(f"VARIANTS item `{item}` is not NAME:ARGS")
        out.append((name.strip(), shlex.split(args) + extra))
    if codec_ref:
        out.append(("codec", ["--coherence", "none", "--iterations", "0"]))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        die(f"duplicate render names: {names}")
    if not out:
        die("nothing to render: MODES and VARIANTS are both empty")
    return out


def main():
    env = os.environ.get
    p = argparse.ArgumentParser(
        description="Temporal coherence (Lai et al. 2018 warping error) of dreamvid renders on real clips.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dreamvid", default=env("DREAMVID", "target/release/dreamvid"), help="binary to measure (env DREAMVID)")
    p.add_argument("--clips", default=env("CLIPS", "vtest Megamind@60 tree vtest+pan@300"), help="NAME[+pan][@START] or video paths, space-separated (env CLIPS)")
    p.add_argument("--frames", type=int, default=int(env("FRAMES", "80")), help="frames per clip (env FRAMES)")
    p.add_argument("--max-width", type=int, default=int(env("MAX_WIDTH", "640")), help="downscale wider clips (env MAX_WIDTH)")
    p.add_argument("--modes", default=env("MODES", "none blend flow"), help="--coherence modes to render (env MODES)")
    p.add_argument("--variants", default=env("VARIANTS", ""), help="extra renders NAME:ARGS;NAME:ARGS (env VARIANTS)")
    p.add_argument("--extra-args", default=env("EXTRA_ARGS", ""), help="appended to every render's arguments (env EXTRA_ARGS)")
    p.add_argument("--preset", default=env("PRESET", "lite0-video"), help="env PRESET")
    p.add_argument("--crf", type=int, default=int(env("CRF", "12")), help="x264 CRF of the renders (env CRF)")
    p.add_argument("--no-codec-ref", dest="codec_ref", action="store_false", default=env("CODEC_REF", "1") != "0",
                   help="skip the --iterations 0 render that measures the codec's own ΔE (env CODEC_REF=0)")
    p.add_argument("--force", action="store_true", default=env("FORCE", "0") == "1", help="render again (env FORCE=1)")
    p.add_argument("--results", default=env("RESULTS", "out/coherence-bench.json"), help="JSON results (tables in .md beside it) (env RESULTS)")
    p.add_argument("--montage", metavar="CLIP", help="only this clip, and a crop montage PNG in docs/")
    p.add_argument("--montage-step", type=int, default=3, help="frames between the montage's columns")
    opts = p.parse_args()

    if not (Path(opts.dreamvid).is_file() and os.access(opts.dreamvid, os.X_OK)):
        die(f"no dreamvid binary at {opts.dreamvid}; run `cargo build --release` first, or set DREAMVID")
    variants = parse_variants(opts.modes, opts.variants, opts.extra_args, opts.codec_ref)
    names = [n for n, _ in variants]
    specs = opts.clips.split()
    if opts.montage:
        match = [s for s in specs if s.partition("@")[0] == opts.montage or parse_clip(s)[0] == opts.montage]
        specs = match[:1] or [opts.montage]

    results = {
        "meta": {
            "dreamvid": os.path.realpath(opts.dreamvid),
            "dreamvid_mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(Path(opts.dreamvid).stat().st_mtime)),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "preset": opts.preset,
            "crf": opts.crf,
            "frames": opts.frames,
            "max_width": opts.max_width,
            "farneback": FARNEBACK,
            "luma_cut": LUMA_CUT,
            "hist_cut": HIST_CUT,
            "metric": "Lai et al. 2018 warping error, RGB [0,1], squared norm summed over channels; Ruder et al. 2016 fwd/bwd occlusion mask; flow: OpenCV Farneback on source",
        },
        "clips": {},
    }
    # Clips measured earlier with the same binary and settings stay in the results file (so a
    # --montage run or a run on one clip adds to it); anything else starts it afresh.
    res = Path(opts.results)
    same = ("dreamvid", "dreamvid_mtime", "preset", "crf", "frames", "max_width")
    if res.is_file():
        try:
            old = json.loads(res.read_text())
            if all(old["meta"].get(k) == results["meta"][k] for k in same):
                results["clips"] = old["clips"]
        except (ValueError, KeyError):
            pass
    for spec in specs:
        label, src, start, pan = parse_clip(spec)
        log(f"{label}:")
        clip = prepare_clip(label, src, start, opts.frames, opts.max_width, pan)
        src_frames, fps = read_video(clip)
        n = len(src_frames)
        h, w = src_frames[0].shape[:2]
        info = f"{label}: {clip} {w}x{h}, {fps:.3f} fps, {n} frames ({n / fps:.1f} s), {clip.stat().st_size / 1e6:.1f} MB (FFV1, lossless)"
        log("  " + info)
        renders, seconds, outputs, argsused = {}, {}, {}, {}
        for name, args in variants:
            out, used, secs = render(opts.dreamvid, clip, name, args, opts)
            frames, _ = read_video(out)
            if len(frames) != n:
                log(f"  warning: {out} has {len(frames)} frames, the source {n}; comparing the first {min(n, len(frames))}")
            if frames and frames[0].shape != src_frames[0].shape:
                die(f"{out} is {frames[0].shape[1]}x{frames[0].shape[0]}, the source {w}x{h}")
            renders[name], seconds[name], outputs[name], argsused[name] = frames, secs, str(out), used
        m_len = min([n] + [len(f) for f in renders.values()])
        src_frames = src_frames[:m_len]
        renders = {k: v[:m_len] for k, v in renders.items()}
        log("  measuring (Farneback flow on the source, both directions) ...")
        m = measure(src_frames, renders, want_motion_maps=bool(opts.montage))
        scopes = summarise(m, names, seconds, m_len)
        mo = m["motion"]
        lines = [f"### {label}", "", info + ".",
                 f"Source motion (Farneback): mean |flow| {mo['mean_flow']:.2f} px/frame, global (median vector) "
                 f"{mo['global_flow']:.2f} px/frame, non-occluded (M=1) {100 * mo['visible']:.1f}% of pixels."]
        if m["cuts"]:
            for c in m["cuts"]:
                lines.append(f"Cut between frames {c['pair']} and {c['pair'] + 1}: luma diff {c['luma_diff']:.3f}, "
                             f"histogram distance {c['hist_dist']:.3f} (dreamvid's cut score, their sum, against its "
                             f"default scene_cut {DREAMVID_CUT}: {'sees' if c['dreamvid_sees_it'] else 'misses'} it).")
        else:
            lines.append("No cuts.")
        drift_line = "; ".join(
            f"{nm} {scopes[0]['rows'][nm]['drift']['start']:+.2f} → {scopes[0]['rows'][nm]['drift']['end']:+.2f}"
            for nm in names)
        lines += [f"Mean luma render − source, first {EDGE} → last {EDGE} frames (/255): {drift_line}.", "",
                  table(label, scopes, names), ""]
        text = "\n".join(lines)
        print(text, flush=True)
        entry = {
            "clip_file": str(clip), "source_file": str(src), "start": start, "width": w, "height": h, "fps": fps,
            "frames": m_len, "bytes": clip.stat().st_size, "cuts": m["cuts"], "shots": m["shots"], "motion": mo,
            "source_pair_errors": m["errors"]["source"], "scopes": scopes,
            "renders": {nm: {"args": argsused[nm], "output": outputs[nm], "seconds": seconds[nm],
                             "pair_errors": m["errors"][nm]} for nm in names},
        }
        if opts.montage:
            entry["montage"] = montage(label, src_frames, renders, names, m,
                                       Path("docs") / f"coherence-montage-{label.replace('@', '-')}.png",
                                       step=opts.montage_step)
        entry["report"] = text
        results["clips"][label] = entry
        res.parent.mkdir(parents=True, exist_ok=True)
        res.write_text(json.dumps(results, indent=1))
        res.with_suffix(".md").write_text("\n".join(c.get("report", "") for c in results["clips"].values()))
    log(f"results: {opts.results} and {Path(opts.results).with_suffix('.md')}")


if __name__ == "__main__":
    main()
