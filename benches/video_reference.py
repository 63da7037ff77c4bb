"""PyTorch + OpenCV side of `scripts/bench video`: dreamvid's default video render (preset
lite0-video) as the per-frame script users run today would do it.

Per frame: decode with OpenCV; against the previous source frame, a scene-cut score (dreamvid's:
Bhattacharyya distance of 64-bin luma histograms plus mean absolute luma difference, above
scene_cut starts afresh) and, within a shot, Farneback flow both ways (OpenCV's usual
parameters) with dreamvid's forward/backward consistency check; the previous dream's residual
(dreamed - source) warped along the backward flow (cv2.remap) is added to the frame with weight
carry where the flow is reliable, and every dream step is scaled by 1 - temporal_weight there;
then the octave dream of torch_reference.py on EfficientNet-Lite0 up to blocks.10 (3 octaves of
1.4, 2 steps each, step 0.012, jitter 16, smoothing 0.5) and OpenCV's VideoWriter (mp4v).

usage: video_reference.py WEIGHTS.safetensors INPUT OUTPUT.mp4 FRAMES THREADS
  prints `FRAMES n`, `STAGE name seconds` for decode, flow, dream and encode, and `PEAK bytes`.
"""
import os
import resource
import sys
import time

import cv2
import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import build_lite0, octave_dream  # noqa: E402

# presets/lite0-video.toml and the settings' defaults.
OCTAVES, OCTAVE_SCALE, ITERATIONS, STEP = 3, 1.4, 2, 0.012
CARRY, TEMPORAL_WEIGHT, SCENE_CUT = 0.98, 0.7, 0.3


def cut_score(prev, cur):
    """dreamvid's shot-change score of two luma planes in [0, 1]."""
    hist = lambda p: np.bincount(np.minimum((p * 64).astype(np.int64), 63).ravel(), minlength=64) / p.size
    overlap = np.sqrt(hist(prev) * hist(cur)).sum()
    return np.sqrt(max(1.0 - overlap, 0.0)) + np.abs(prev - cur).mean()


def farneback(a, b):
    """Flow from 8-bit luma a to b (where each pixel of a went), OpenCV's usual parameters."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def sample(img, flow):
    """img at p + flow(p), bilinear, edges clamped."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def reliable(back, forward):
    """dreamvid's forward/backward consistency: 1 where following `back` and then `forward`
    comes home (within 0.5 px plus 1% of the motion), 0 elsewhere or off the frame."""
    h, w = back.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    qx, qy = gx + back[..., 0], gy + back[..., 1]
    there = sample(forward, back)
    err = ((back + there) ** 2).sum(-1)
    bound = 0.01 * ((back**2).sum(-1) + (there**2).sum(-1)) + 0.5
    inside = (qx >= 0) & (qy >= 0) & (qx <= w - 1) & (qy <= h - 1)
    return ((err <= bound) & inside).astype(np.float32)


def main():
    weights, source, output, frames, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    model = build_lite0(load_file(weights))
    gen = torch.Generator().manual_seed(0)
    stages = dict.fromkeys(["decode", "flow", "dream", "encode"], 0.0)
    clock = time.perf_counter
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        sys.exit(f"OpenCV cannot open {source}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer, previous, done = None, None, 0
    while done < frames:
        t = clock()
        ok, bgr = capture.read()
        stages["decode"] += clock() - t
        if not ok:
            break
        t = clock()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        start, weight = rgb, None
        if previous is not None:
            prev_luma, prev_rgb, prev_dreamed = previous
            if cut_score(prev_luma.astype(np.float32) / 255, luma.astype(np.float32) / 255) <= SCENE_CUT:
                back, forward = farneback(luma, prev_luma), farneback(prev_luma, luma)
                mask = reliable(back, forward)
                carried = sample(prev_dreamed - prev_rgb, back)
                start = np.clip(rgb + CARRY * mask[..., None] * carried, 0, 1)
                weight = torch.from_numpy(1 - TEMPORAL_WEIGHT * mask)[None, None]
        stages["flow"] += clock() - t
        t = clock()
        x = torch.from_numpy(np.ascontiguousarray(start.transpose(2, 0, 1)))[None]
        dreamed = octave_dream(model, x, gen, OCTAVES, ITERATIONS, OCTAVE_SCALE, STEP, weight)
        dreamed = dreamed[0].detach().numpy().transpose(1, 2, 0)
        out = np.round(dreamed * 255).astype(np.uint8)
        stages["dream"] += clock() - t
        t = clock()
        if writer is None:
            h, w = out.shape[:2]
            writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not writer.isOpened():
                sys.exit(f"OpenCV cannot write {output}")
        writer.write(cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        stages["encode"] += clock() - t
        # Like dreamvid, the next frame carries the 8-bit dreamed frame's residual.
        previous = (luma, rgb, out.astype(np.float32) / 255)
        done += 1
    t = clock()
    if writer is not None:
        writer.release()
    stages["encode"] += clock() - t
    print(f"FRAMES {done}")
    for name, seconds in stages.items():
        print(f"STAGE {name} {seconds:.3f}")
    print(f"PEAK {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}")


if __name__ == "__main__":
    main()
