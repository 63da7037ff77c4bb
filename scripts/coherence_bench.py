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

Static-pixel flicker, a second measure that needs no flow at all (`dreamvid stability`
implements the same definition; keep the two identical): for each pair (t, t+1) inside a shot,
with Y the luma in [0, 1] (0.299 R + 0.587 G + 0.114 B) of the SOURCE and d = Y_{t+1} - Y_t,
- sigma = Immerkær's fast noise estimate of Y_{t+1}: sqrt(pi/2) / (6 (W-2)(H-2)) times the sum
  over the interior pixels of |Y_{t+1} * N|, N = [[1,-2,1],[-2,4,-2],[1,-2,1]]; at least 0.5/255;
- the static pixels are those whose mean of d^2 over their 5x5 window (clamped at the image's
  edges: the mean over the window's pixels inside it) is at most 2 x 2 sigma^2 (the expected
  d^2 of two frames of pure noise);
- the flicker of a video V in that pair is the mean over the static pixels of
  ||V_{t+1}(i) - V_t(i)||^2 (RGB in [0, 1], squares summed over the channels).
Pairs without static pixels are skipped; the flicker of a video is the mean over the pairs. The
static share is the mean over the pairs inside shots of the share of static pixels.

Reported per clip and render (and per shot, a shot being a run of frames between cuts):
E_warp x 1e3; dE = E_warp(render) - E_warp(source), the flicker and swimming the dream adds
(E_warp(source) is not zero: flow errors, lighting, noise); dE relative to the `none` and `blend`
renders; strength = mean |render - source| over all pixels and channels (0..255); the first
frame's strength = a shot's first frame's strength / its 25th frame's (its last, if shorter; for
the clip, the lowest over its shots); the static-pixel flicker x 1e3 and its ratio to the
source's; drift = the change, from the first 10 frames to the last 10 (of a shot: min(10, half
its length)), of the mean luma difference render - source (0..255 units); and seconds per frame
of the dreamvid call (model loading, decoding and encoding included).

Then per clip the flow render against the targets of issue 27 (TARGETS below), marked ✓ or ✗
("–" where a target cannot be judged, with the reason in a footnote), and, where the binary's
`dreamvid stability` has --json, how its numbers (its own flow) agree with these (OpenCV's).
"""

import argparse
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import cv2
import numpy as np

import coherence_clips

FARNEBACK = dict(pyr_scale=0.5, levels=5, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
LUMA_CUT = 0.25  # mean |luma difference| in [0, 1]
HIST_CUT = 0.2  # Bhattacharyya distance of 64-bin grey histograms
HIST_BINS = 64
DREAMVID_CUT = 0.3  # dreamvid's default scene_cut: histogram distance + mean luma difference
EDGE = 10  # frames averaged at each end for the brightness drift
IMMERKAER = np.float32([[1, -2, 1], [-2, 4, -2], [1, -2, 1]])
NOISE_FLOOR = 0.5 / 255  # the least noise level: 8-bit quantisation's
STATIC_BOX = 5  # window of the static-pixel test
STATIC_FACTOR = 2.0  # static: mean d^2 over the window <= STATIC_FACTOR x 2 sigma^2
FIRST_VS = 25  # the first frame's strength is compared with this frame's (1-based) of its shot
DATA = Path(".coherence-data")
SAMPLE_CLIPS = ("vtest", "Megamind", "tree")
# The footage class of each clip, for the summary (the synthetic clips' are in coherence_clips).
CLASSES = {
    "vtest": "static camera, people walking",
    "Megamind": "animation, cuts",
    "tree": "static camera, leaves in wind, a hand",
    "vtest+pan": "moving camera (pan)",
    **{name: c[0] for name, c in coherence_clips.CLIPS.items()},
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Clips


def parse_clip(spec):
    """`NAME[+pan][@START]` (a sample clip, a clip of coherence_clips, or a path to any video)
    -> (label, source path, start, pan). `+pan` films the clip with a moving camera: a window
    5/6 of the frame's size slides across it (see PAN), so that camera motion is measured too
    (the sample clips are all shot from a fixed camera). A clip of coherence_clips is filmed
    and encoded here the first time it is asked for."""
    base, _, start = spec.partition("@")
    start = int(start) if start else 0
    base, pan = (base[: -len("+pan")], True) if base.endswith("+pan") else (base, False)
    path = Path(base)
    name = path.stem
    if base in SAMPLE_CLIPS:
        path = DATA / "src" / f"{base}.avi"
    elif base in coherence_clips.CLIPS:
        path, name = coherence_clips.make(base, DATA), base
    elif not path.is_file():
        die(f"no clip `{base}`: use one of {', '.join(SAMPLE_CLIPS + tuple(coherence_clips.CLIPS))} or a path to a video")
    label = name + ("+pan" if pan else "") + (f"@{start}" if start else "")
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


def flag_value(args, flag):
    """The value of the last `flag VALUE` or `flag=VALUE` in `args`, or None."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a[len(flag) + 1 :]
    return value


def preset_file(preset):
    """The TOML file of a preset: presets/NAME.toml, or `preset` itself if it is a file; None
    when neither exists (a preset only the binary knows)."""
    for path in (Path("presets") / f"{preset}.toml", Path(preset)):
        if path.is_file():
            return path
    return None


def frame_iterations(preset):
    """The preset's `[video] frame_iterations` (the steps per octave of a frame that continues a
    shot), or None where the preset has none, or 0 (then every frame takes `iterations`)."""
    path = preset_file(preset)
    if path is None:
        log(f"preset {preset}: no presets/{preset}.toml here; `none` and `blend` render with the binary's preset as it is")
        return None
    value = tomllib.loads(path.read_text()).get("video", {}).get("frame_iterations")
    if value is not None and not isinstance(value, int):
        log(f"preset {preset}: [video] frame_iterations is not a number ({value!r}); nothing pinned")
        return None
    return value or None


def render(dreamvid, clip, name, variant_args, opts):
    """Runs dreamvid on `clip` (unless an up-to-date output exists); returns (path, seconds)."""
    args = list(variant_args)
    if not has_flag(args, "--preset"):
        args += ["--preset", opts.preset]
    if not has_flag(args, "--crf"):
        args += ["--crf", str(opts.crf)]
    # One file per binary, argument list and preset text, so switching DREAMVID between builds
    # or editing the preset never reuses another render (the mtime test below catches rebuilds
    # in place).
    preset = preset_file(flag_value(args, "--preset"))
    preset_sha = hashlib.sha256(preset.read_bytes()).hexdigest() if preset else None
    key = hashlib.sha256(json.dumps([os.path.realpath(dreamvid)] + args + [preset_sha]).encode()).hexdigest()[:8]
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


def luma(frame):
    """Luma in [0, 1] of a BGR frame: 0.299 R + 0.587 G + 0.114 B (float32)."""
    f = frame.astype(np.float32) / 255
    return 0.299 * f[..., 2] + 0.587 * f[..., 1] + 0.114 * f[..., 0]


def noise_sigma(y):
    """Immerkær's fast noise estimate ("Fast Noise Variance Estimation", 1996) of a luma plane:
    sqrt(pi/2) / (6 (W-2)(H-2)) x sum over the interior pixels of |y * IMMERKAER|, at least
    NOISE_FLOOR."""
    h, w = y.shape
    response = cv2.filter2D(y, cv2.CV_32F, IMMERKAER)[1:-1, 1:-1]  # the border is not used
    sigma = math.sqrt(math.pi / 2) / (6 * (w - 2) * (h - 2)) * float(np.abs(response).sum(dtype=np.float64))
    return max(sigma, NOISE_FLOOR)


def static_pixels(y_t, y_t1):
    """The pixels that did not change from luma plane y_t to y_t1 beyond the noise of y_t1:
    mean of (y_t1 - y_t)^2 over the STATIC_BOX window, clamped at the edges, at most
    STATIC_FACTOR x 2 sigma^2."""
    d = y_t1 - y_t
    sigma = noise_sigma(y_t1)
    box = (STATIC_BOX, STATIC_BOX)
    inside = cv2.blur(np.ones_like(d), box, borderType=cv2.BORDER_CONSTANT)  # share of the window in the frame
    mean_d2 = cv2.blur(d * d, box, borderType=cv2.BORDER_CONSTANT) / inside
    return mean_d2 <= STATIC_FACTOR * 2 * sigma * sigma


def static_flicker(v_t, v_t1, static):
    """Mean over the `static` pixels of ||v_t1 - v_t||^2 (RGB in [0, 1], summed over channels)."""
    diff = v_t1.astype(np.float32) - v_t.astype(np.float32)
    return float((diff * diff).sum(-1)[static].mean(dtype=np.float64) / 255**2)


def drift(luma_diff, a, b):
    """Change of the mean luma difference (render - source) from the start to the end of the
    frames a..b (inclusive): first/last min(EDGE, half the length) frames."""
    k = max(1, min(EDGE, (b - a + 1) // 2))
    start, end = float(np.mean(luma_diff[a : a + k])), float(np.mean(luma_diff[b - k + 1 : b + 1]))
    return {"start": start, "end": end, "change": end - start}


def measure(src_frames, renders, want_motion_maps=False):
    """E_warp and static-pixel flicker per pair for the source and every render, the static
    share per pair, cuts, shots and per-frame stats."""
    n = len(src_frames)
    greys = [grey(f) for f in src_frames]
    lumas = [luma(f) for f in src_frames]
    h, w = greys[0].shape
    grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    cuts = detect_cuts(greys)
    cut_pairs = {c["pair"] for c in cuts}
    bounds = [0] + [c["pair"] + 1 for c in cuts] + [n]
    shots = [(a, b - 1) for a, b in zip(bounds, bounds[1:])]
    videos = {"source": src_frames, **renders}
    errors = {name: [None] * (n - 1) for name in videos}
    flicker = {name: [None] * (n - 1) for name in videos}
    static_share = [None] * (n - 1)
    motion = {"mean_flow": [], "global_flow": [], "visible": []}
    motion_sum = np.zeros((h, w), np.float64)
    motion_maps = [None] * (n - 1)
    for t in range(n - 1):
        if t in cut_pairs:
            continue
        static = static_pixels(lumas[t], lumas[t + 1])
        static_share[t] = float(static.mean())
        if static.any():
            for name, frames in videos.items():
                flicker[name][t] = static_flicker(frames[t], frames[t + 1], static)
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
        "flicker": flicker,
        "static_share": static_share,
        "per_frame": per_frame,
        "motion": {k: float(np.mean(v)) if v else 0.0 for k, v in motion.items()},
        "motion_sum": motion_sum,
        "motion_maps": motion_maps,
    }


def mean_error(errs, a, b):
    """Mean of the per-pair values of pairs a..b-1 that have one (None where none has)."""
    vals = [e for e in errs[a:b] if e is not None]
    return float(np.mean(vals)) if vals else None


def first_frame(strength, a, b):
    """A shot's (frames a..b) first frame's strength over its FIRST_VS-th frame's (its last
    frame's, if shorter)."""
    ref = strength[min(a + FIRST_VS - 1, b)]
    return float(strength[a] / ref) if ref > 0 else None


def summarise(m, names, seconds, nframes):
    """Numbers for the whole clip and for each shot."""
    shots = [(a, b) for a, b in m["shots"] if b > a]
    scopes = [("clip", 0, nframes - 1)] + [(f"shot {a}-{b}", a, b) for a, b in shots]
    out = []
    for label, a, b in scopes:
        e_src = mean_error(m["errors"]["source"], a, b)
        f_src = mean_error(m["flicker"]["source"], a, b)
        rows = {"source": {"E": e_src, "flicker": f_src, "static_share": mean_error(m["static_share"], a, b)}}
        for name in names:
            e = mean_error(m["errors"][name], a, b)
            f = mean_error(m["flicker"][name], a, b)
            strength, luma_diff = m["per_frame"][name]
            if label == "clip":
                firsts = [r for r in (first_frame(strength, sa, sb) for sa, sb in shots) if r is not None]
                first = min(firsts) if firsts else None
            else:
                first = first_frame(strength, a, b)
            rows[name] = {
                "E": e,
                "dE": None if e is None or e_src is None else e - e_src,
                "strength": float(strength[a : b + 1].mean()),
                "first_frame": first,
                "flicker": f,
                "flicker_ratio": ratio(f, f_src),
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
    """The clip's numbers per render, as a Markdown table (and one per shot if it has several)."""
    head = ("| clip | mode | E_warp ×1e3 | ΔE ×1e3 | ΔE / ΔE(none) | ΔE / ΔE(blend) | strength | first / "
            f"{FIRST_VS}th | static flicker ×1e3 | flicker / source | drift /255 | s/frame |")
    rule = "|" + " --- |" * 12
    lines = [head, rule]
    shot_lines = []
    for scope in scopes:
        rows = scope["rows"]
        ref_none = rows.get("none", {}).get("dE")
        ref_blend = rows.get("blend", {}).get("dE")
        target = lines if scope["scope"] == "clip" else shot_lines
        where = clip if scope["scope"] == "clip" else f"{clip} {scope['scope']}"
        src = rows["source"]
        target.append(f"| {where} | source | {fmt(src['E'], '.3f', 1e3)} | | | | | | {fmt(src['flicker'], '.3f', 1e3)} | | | |")
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
                fmt(r["first_frame"], ".2f"),
                fmt(r["flicker"], ".3f", 1e3),
                fmt(r["flicker_ratio"], ".2f"),
                fmt(r["drift"]["change"], "+.2f"),
                fmt(r["s_per_frame"], ".2f") if scope["scope"] == "clip" else "",
            ]
            target.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines)
    if len(scopes) > 2:  # more than one shot: per-shot table
        out += "\n\nper shot:\n\n" + "\n".join([head, rule] + shot_lines)
    elif len(scopes) == 2:
        out += "\n\n(one shot: the per-shot numbers are the clip's)"
    return out


# ---------------------------------------------------------------------------------------------
# Targets (issue 27), judged on the flow render's clip figures

TARGETS = [  # key, column head, the test a value must pass
    ("dE_none", "ΔE / ΔE(none) ≤ 0.25", lambda v: v <= 0.25),
    ("dE_blend", "ΔE / ΔE(blend) ≤ 0.5", lambda v: v <= 0.5),
    ("strength", "strength / none ≥ 1.25", lambda v: v >= 1.25),
    ("first_frame", f"first / {FIRST_VS}th ≥ 0.8", lambda v: v >= 0.8),
    ("flicker", "static flicker / source ≤ 3", lambda v: v <= 3),
    ("drift", "abs(drift) in a shot ≤ 2/255", lambda v: abs(v) <= 2),
    ("cost_ref", "s/frame / COST_REF ≤ 1.1", lambda v: v <= 1.1),
    ("cost_full", "s/frame / full ≤ 0.3", lambda v: v <= 0.3),
]
OPTIONAL = ("cost_ref", "cost_full")  # columns shown only where some clip has a figure


def judge(scopes, cost_ref):
    """The flow render's figure for each of TARGETS, from a clip's `scopes` (the clip's, then
    each shot's): {key: {"value", "met", "why"}}, met None (and `why` saying why) where a target
    cannot be judged. None when there is no flow render. The drift is the largest within a shot:
    across a cut the dream starts afresh on another picture, whose brightness shift is no
    drift."""
    rows = scopes[0]["rows"]
    flow = rows.get("flow")
    if flow is None:
        return None
    none, blend, full = rows.get("none"), rows.get("blend"), rows.get("full")

    def against(ref, mode):
        if ref is None:
            return None, f"no `{mode}` render"
        if ref["dE"] is None or ref["dE"] <= 1e-9:
            return None, f"ΔE({mode}) ≤ 0 (that render is steadier than its source): a ratio to it means nothing"
        return ratio(flow["dE"], ref["dE"]), "flow's ΔE could not be measured (no visible pixels)"

    spf = flow["s_per_frame"]
    figures = {
        "dE_none": against(none, "none"),
        "dE_blend": against(blend, "blend"),
        "strength": (flow["strength"] / none["strength"], None) if none else (None, "no `none` render"),
        "first_frame": (flow["first_frame"], "no shot of two frames or more"),
        "flicker": (flow["flicker_ratio"], "no static pixels in the source"),
        "drift": (max((sc["rows"]["flow"]["drift"]["change"] for sc in scopes[1:] or scopes), key=abs), None),
        "cost_ref": (spf / cost_ref, None) if cost_ref else (None, "no COST_REF given"),
        "cost_full": (spf / full["s_per_frame"], None) if full else (None, "no `full` render (FULL=1)"),
    }
    out = {}
    for key, _, test in TARGETS:
        value, why = figures[key]
        out[key] = {"value": value, "met": None if value is None else bool(test(value)),
                    "why": why if value is None else None}
    return out


def targets_table(clips):
    """One row per clip with the flow render's figure against each target (✓ / ✗, or – with a
    footnote), and the count of targets met."""
    judged = {label: c["targets"] for label, c in clips.items() if c.get("targets")}
    if not judged:
        return "No flow render: the targets are not judged."
    keys = [(k, head) for k, head, _ in TARGETS
            if k not in OPTIONAL or any(t[k]["value"] is not None for t in judged.values())]
    notes = {}
    lines = ["| clip | class | " + " | ".join(head for _, head in keys) + " | met |",
             "|" + " --- |" * (len(keys) + 3)]
    met = {k: [0, 0] for k, _ in keys}
    for label, t in judged.items():
        cells = []
        for k, _ in keys:
            r = t[k]
            if r["met"] is None:
                mark = notes.setdefault(r["why"], len(notes) + 1)
                cells.append(f"– {superscript(mark)}")
                continue
            met[k][0] += r["met"]
            met[k][1] += 1
            cells.append(f"{r['value']:{'+.2f' if k == 'drift' else '.2f'}} {'✓' if r['met'] else '✗'}")
        ok = sum(t[k]["met"] is True for k, _ in keys)
        of = sum(t[k]["met"] is not None for k, _ in keys)
        lines.append(f"| {label} | {clips[label].get('class', '')} | " + " | ".join(cells) + f" | {ok}/{of} |")
    total, of = sum(m[0] for m in met.values()), sum(m[1] for m in met.values())
    lines.append("| met | | " + " | ".join(f"{m[0]}/{m[1]}" for m in met.values()) + f" | {total}/{of} |")
    out = ["Targets (the flow render, whole clip):", ""] + lines
    if notes:
        out.append("")
        out += [f"{superscript(n)} {why}" for why, n in notes.items()]
    out += ["", f"Targets met: {total} of {of} judged, over {len(judged)} clips."]
    return "\n".join(out)


def superscript(n):
    return str(n).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


# ---------------------------------------------------------------------------------------------
# dreamvid's own measure (`dreamvid stability`, its flow) against this one (OpenCV's)


def stability_has_json(dreamvid):
    """Whether this binary's `dreamvid stability` can print JSON (--json in its help)."""
    run = subprocess.run([dreamvid, "stability", "--help"], capture_output=True, text=True)
    return "--json" in run.stdout + run.stderr


def dreamvid_stability(dreamvid, source, output):
    """`dreamvid stability SOURCE OUTPUT --json`, parsed; cached beside the render. None (and
    a warning) where it fails."""
    cache = Path(output + ".stability.json")
    newest = max(Path(p).stat().st_mtime for p in (dreamvid, source, output))
    if cache.is_file() and cache.stat().st_mtime > newest:
        return json.loads(cache.read_text())
    run = subprocess.run([dreamvid, "stability", str(source), output, "--json"], capture_output=True, text=True)
    try:
        data = json.loads(run.stdout) if run.returncode == 0 else None
    except ValueError:
        data = None
    if data is None:
        log(f"  warning: `dreamvid stability {source} {output} --json` failed (exit {run.returncode}): "
            + (run.stderr or run.stdout).strip()[-300:])
        return None
    cache.write_text(json.dumps(data))
    return data


def agreement_table(clips):
    """Per clip, ΔE(flow) / ΔE(none) and the flow render's static-pixel flicker over the
    source's, by OpenCV (this script) and by `dreamvid stability` (its clip row), and the
    quotients dreamvid / OpenCV (ΔE's target: 0.8-1.2)."""
    lines = ["| clip | ΔE flow/none OpenCV | dreamvid | quotient (0.8–1.2) | static flicker flow/source OpenCV | dreamvid | quotient |",
             "|" + " --- |" * 7]
    flows, skipped = set(), []
    for label, c in clips.items():
        ours = c["scopes"][0]["rows"]
        theirs = {}
        for name, data in (c.get("stability") or {}).items():
            row = next((r for r in (data or {}).get("rows", []) if r.get("scope") == "clip"), None)
            if row:
                theirs[name] = row
                flows.add(str(data.get("flow", "?")))
        if not ({"flow", "none"} <= ours.keys() and {"flow", "none"} <= theirs.keys()):
            skipped.append(label)
            continue
        ours_de = ratio(ours["flow"]["dE"], ours["none"]["dE"])
        theirs_de = ratio(theirs["flow"]["added"], theirs["none"]["added"])
        ours_fl = ours["flow"]["flicker_ratio"]
        theirs_fl = ratio(theirs["flow"]["static_dreamed"], theirs["flow"]["static_source"])
        q_de, q_fl = ratio(theirs_de, ours_de), ratio(theirs_fl, ours_fl)
        mark = "" if q_de is None else (" ✓" if 0.8 <= q_de <= 1.2 else " ✗")
        lines.append(f"| {label} | {fmt(ours_de, '.3f')} | {fmt(theirs_de, '.3f')} | {fmt(q_de, '.2f')}{mark} | "
                     f"{fmt(ours_fl, '.2f')} | {fmt(theirs_fl, '.2f')} | {fmt(q_fl, '.2f')} |")
    if skipped:
        lines += ["", "Not compared (no `none` or `flow` figures from one of the two): " + ", ".join(skipped) + "."]
    if len(lines) == 2:
        return "`dreamvid stability --json` gave nothing to compare (it needs the `none` and `flow` renders)."
    return "\n".join(["`dreamvid stability` (its flow: " + ", ".join(sorted(flows)) + ") against OpenCV's measure:", ""] + lines)


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


def parse_variants(modes, variants, extra, codec_ref, full, per_frame):
    """The renders: (name, dreamvid arguments). `none` and `blend` dream every frame with
    `per_frame` steps per octave (the preset's frame_iterations, as they render today) where
    it is given; `full` (if asked for) dreams every frame as an image, with the preset's
    iterations."""
    out = []
    extra = shlex.split(extra)
    for mode in modes.split():
        args = ["--coherence", mode] + extra
        if per_frame and mode in ("none", "blend") and not has_flag(args, "--iterations"):
            args += ["--iterations", str(per_frame)]
        out.append((mode, args))
    if full:
        out.append(("full", ["--coherence", "none"] + extra))
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


def write_results(res, results, summary):
    """The JSON results, and beside them the clips' reports and the summary as Markdown."""
    res.parent.mkdir(parents=True, exist_ok=True)
    res.write_text(json.dumps(results, indent=1))
    reports = [c.get("report", "") for c in results["clips"].values()]
    res.with_suffix(".md").write_text("\n".join(reports + ([summary] if summary else [])) + "\n")


def main():
    env = os.environ.get
    p = argparse.ArgumentParser(
        description="Temporal coherence (Lai et al. 2018 warping error, static-pixel flicker) of dreamvid renders on real and photo-built clips.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    default_clips = " ".join(["vtest", "Megamind@60", "tree", "vtest+pan@300", *coherence_clips.CLIPS])
    p.add_argument("--dreamvid", default=env("DREAMVID", "target/release/dreamvid"), help="binary to measure (env DREAMVID)")
    p.add_argument("--clips", default=env("CLIPS", default_clips), help="NAME[+pan][@START] or video paths, space-separated (env CLIPS)")
    p.add_argument("--frames", type=int, default=int(env("FRAMES", "80")), help="frames per clip (env FRAMES)")
    p.add_argument("--max-width", type=int, default=int(env("MAX_WIDTH", "640")), help="downscale wider clips (env MAX_WIDTH)")
    p.add_argument("--modes", default=env("MODES", "none blend flow"), help="--coherence modes to render (env MODES)")
    p.add_argument("--variants", default=env("VARIANTS", ""), help="extra renders NAME:ARGS;NAME:ARGS (env VARIANTS)")
    p.add_argument("--extra-args", default=env("EXTRA_ARGS", ""), help="appended to every render's arguments (env EXTRA_ARGS)")
    p.add_argument("--preset", default=env("PRESET", "lite0-video"), help="env PRESET")
    p.add_argument("--crf", type=int, default=int(env("CRF", "12")), help="x264 CRF of the renders (env CRF)")
    p.add_argument("--no-codec-ref", dest="codec_ref", action="store_false", default=env("CODEC_REF", "1") != "0",
                   help="skip the --iterations 0 render that measures the codec's own ΔE (env CODEC_REF=0)")
    p.add_argument("--full", action="store_true", default=env("FULL", "0") == "1",
                   help="also render `full`: --coherence none, every frame dreamed as an image (env FULL=1)")
    p.add_argument("--cost-ref", type=float, default=float(env("COST_REF", "0")) or None,
                   help="reference seconds per frame for the cost target (env COST_REF)")
    p.add_argument("--force", action="store_true", default=env("FORCE", "0") == "1", help="render again (env FORCE=1)")
    p.add_argument("--results", default=env("RESULTS", "out/coherence-bench.json"), help="JSON results (tables in .md beside it) (env RESULTS)")
    p.add_argument("--montage", metavar="CLIP", help="only this clip, and a crop montage PNG in docs/")
    p.add_argument("--montage-step", type=int, default=3, help="frames between the montage's columns")
    opts = p.parse_args()

    if not (Path(opts.dreamvid).is_file() and os.access(opts.dreamvid, os.X_OK)):
        die(f"no dreamvid binary at {opts.dreamvid}; run `cargo build --release` first, or set DREAMVID")
    per_frame = frame_iterations(opts.preset)
    log(f"preset {opts.preset}: " + (f"[video] frame_iterations = {per_frame}, so `none` and `blend` render with --iterations {per_frame}"
                                     if per_frame else "no [video] frame_iterations; `none` and `blend` render with the preset's iterations"))
    variants = parse_variants(opts.modes, opts.variants, opts.extra_args, opts.codec_ref, opts.full, per_frame)
    names = [n for n, _ in variants]
    specs = opts.clips.split()
    if opts.montage:
        match = [s for s in specs if s.partition("@")[0] == opts.montage or parse_clip(s)[0] == opts.montage]
        specs = match[:1] or [opts.montage]
    with_json = stability_has_json(opts.dreamvid)
    if not with_json:
        log("this dreamvid's `stability` has no --json yet: no comparison with its own measure")

    results = {
        "meta": {
            "format": 2,
            "dreamvid": os.path.realpath(opts.dreamvid),
            "dreamvid_mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(Path(opts.dreamvid).stat().st_mtime)),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "preset": opts.preset,
            "frame_iterations": per_frame,
            "crf": opts.crf,
            "frames": opts.frames,
            "max_width": opts.max_width,
            "cost_ref": opts.cost_ref,
            "farneback": FARNEBACK,
            "luma_cut": LUMA_CUT,
            "hist_cut": HIST_CUT,
            "metric": "Lai et al. 2018 warping error, RGB [0,1], squared norm summed over channels; Ruder et al. 2016 fwd/bwd occlusion mask; flow: OpenCV Farneback on source",
            "static_flicker": f"flow-free: source pixels whose {STATIC_BOX}x{STATIC_BOX} mean of d^2 <= {STATIC_FACTOR} x 2 sigma^2 (Immerkær sigma, floor 0.5/255); mean ||V_t+1 - V_t||^2 there",
        },
        "clips": {},
    }
    # Clips measured earlier with the same binary and settings stay in the results file (so a
    # --montage run or a run on one clip adds to it); anything else starts it afresh.
    res = Path(opts.results)
    same = ("format", "dreamvid", "dreamvid_mtime", "preset", "frame_iterations", "crf", "frames", "max_width")
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
        done = {}  # arguments -> the render made with them (`full` is `none` where nothing is pinned)
        for name, args in variants:
            if tuple(args) in done:
                log(f"  {name}: the same arguments as {done[tuple(args)][0]}; that render counts for both")
                out, used, secs = done[tuple(args)][1]
            else:
                out, used, secs = render(opts.dreamvid, clip, name, args, opts)
                done[tuple(args)] = name, (out, used, secs)
            frames, _ = read_video(out)
            if len(frames) != n:
                log(f"  warning: {out} has {len(frames)} frames, the source {n}; comparing the first {min(n, len(frames))}")
            if frames and frames[0].shape != src_frames[0].shape:
                die(f"{out} is {frames[0].shape[1]}x{frames[0].shape[0]}, the source {w}x{h}")
            renders[name], seconds[name], outputs[name], argsused[name] = frames, secs, str(out), used
        m_len = min([n] + [len(f) for f in renders.values()])
        src_frames = src_frames[:m_len]
        renders = {k: v[:m_len] for k, v in renders.items()}
        log("  measuring (Farneback flow on the source, both directions; static pixels) ...")
        m = measure(src_frames, renders, want_motion_maps=bool(opts.montage))
        scopes = summarise(m, names, seconds, m_len)
        mo = m["motion"]
        shares = [s for s in m["static_share"] if s is not None]
        lines = [f"### {label}", "", info + ".",
                 f"Source motion (Farneback): mean |flow| {mo['mean_flow']:.2f} px/frame, global (median vector) "
                 f"{mo['global_flow']:.2f} px/frame, non-occluded (M=1) {100 * mo['visible']:.1f}% of pixels.",
                 f"Static pixels (flow-free test on the source): {100 * float(np.mean(shares)) if shares else 0:.1f}% of a pair's "
                 f"pixels on average; {sum(s == 0 for s in shares)} of {len(shares)} pairs inside shots have none."]
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
            "class": CLASSES.get(label.partition("@")[0], ""),
            "clip_file": str(clip), "source_file": str(src), "start": start, "width": w, "height": h, "fps": fps,
            "frames": m_len, "bytes": clip.stat().st_size, "cuts": m["cuts"], "shots": m["shots"], "motion": mo,
            "source_pair_errors": m["errors"]["source"], "source_pair_flicker": m["flicker"]["source"],
            "static_share": m["static_share"], "scopes": scopes,
            "renders": {nm: {"args": argsused[nm], "output": outputs[nm], "seconds": seconds[nm],
                             "pair_errors": m["errors"][nm], "pair_flicker": m["flicker"][nm]} for nm in names},
        }
        if with_json:
            log("  dreamvid stability --json on each render ...")
            entry["stability"] = {nm: dreamvid_stability(opts.dreamvid, clip, outputs[nm]) for nm in names}
        if opts.montage:
            entry["montage"] = montage(label, src_frames, renders, names, m,
                                       Path("docs") / f"coherence-montage-{label.replace('@', '-')}.png",
                                       step=opts.montage_step)
        entry["report"] = text
        results["clips"][label] = entry
        write_results(res, results, "")

    # The summary covers every clip in the results (this run's and those kept from earlier runs
    # of the same binary and settings), judged with this run's COST_REF.
    for c in results["clips"].values():
        c["targets"] = judge(c["scopes"], opts.cost_ref)
    summary = ["## Summary", "", targets_table(results["clips"]), ""]
    if with_json:
        summary += [agreement_table(results["clips"]), ""]
    else:
        summary += ["This dreamvid's `stability` has no --json yet: no comparison with its own measure.", ""]
    summary = "\n".join(summary)
    print(summary, flush=True)
    write_results(res, results, summary)
    log(f"results: {opts.results} and {res.with_suffix('.md')}")


if __name__ == "__main__":
    main()
