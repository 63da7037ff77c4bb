"""The measuring side of scripts/quality-bench: reads the dreams and sources that the
quality_bench example wrote, prints a Markdown table per model and draws contact sheets.

Per setting, over the six photos:
- objective: the objective reached (the preset's layer norms on the whole dreamed picture, no
  jitter), divided by the first setting's on the same photo; the geometric mean over photos.
- gain: the objective reached over the source's own (geometric mean).
- HF share: of the dream's power (dream - source, per channel, mean removed; periodogram by
  numpy's FFT, no window), the share at spatial frequencies above 1/4 Nyquist (radius > 0.125
  cycles per pixel); the mean over photos. Pixel-level noise raises it.
- strength: the RMS of dream - source, in 8-bit levels (mean over photos).
- time: seconds to dream all six photos (on a shared machine: preliminary).

  quality_bench.py [--sheets DIR] [--json FILE] MODEL NAME DIR [MODEL NAME DIR ...]
"""

import argparse
import json
import math
import os

import cv2
import numpy as np

CUTOFF = 0.125  # cycles per pixel: 1/4 of Nyquist (0.5)
THUMB = 150  # contact sheet: thumbnail height, and side of the 1:1 crop beside it


def read(path):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"error: cannot read {path}")
    return img


def hf_share(source, dream):
    d = dream.astype(np.float64) - source.astype(np.float64)
    d -= d.mean(axis=(0, 1))
    power = (np.abs(np.fft.fft2(d, axes=(0, 1))) ** 2).sum(axis=2)
    fy = np.fft.fftfreq(d.shape[0])[:, None]
    fx = np.fft.fftfreq(d.shape[1])[None, :]
    high = np.hypot(fx, fy) > CUTOFF
    total = power.sum()
    return float(power[high].sum() / total) if total > 0 else 0.0


def results(directory):
    rows = {}
    with open(os.path.join(directory, "results.txt")) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "RESULT":
                rows[parts[1]] = (float(parts[2]), float(parts[3]), float(parts[4]))
    return rows


def measure(directory):
    out = {}
    for name, (before, after, seconds) in results(directory).items():
        source = read(os.path.join(directory, "source", name + ".png"))
        dream = read(os.path.join(directory, name + ".png"))
        rms = float(np.sqrt(((dream.astype(np.float64) - source) ** 2).mean()))
        out[name] = {"before": before, "after": after, "seconds": seconds, "hf": hf_share(source, dream), "rms": rms}
    return out


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def sheet(directory, names, label, path):
    """Per photo: the dream shrunk to THUMB high, and a 1:1 crop of its centre beside it."""
    cells = []
    for name in names:
        dream = read(os.path.join(directory, name + ".png"))
        h, w = dream.shape[:2]
        thumb = cv2.resize(dream, (round(w * THUMB / h), THUMB), interpolation=cv2.INTER_AREA)
        y, x = (h - THUMB) // 2, (w - THUMB) // 2
        crop = dream[y : y + THUMB, x : x + THUMB]
        cells.append(np.hstack([thumb, np.full((THUMB, 4, 3), 255, np.uint8), crop]))
    width = max(c.shape[1] for c in cells)
    cells = [np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0)), constant_values=255) for c in cells]
    gap = np.full((THUMB, 8, 3), 255, np.uint8)
    rows = [np.hstack([cells[i], gap, cells[i + 1]]) if i + 1 < len(cells) else cells[i] for i in range(0, len(cells), 2)]
    rows = [np.pad(r, ((4, 4), (0, rows[0].shape[1] - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    title = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    cv2.putText(title, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(path, np.vstack([title] + rows), [cv2.IMWRITE_JPEG_QUALITY, 82])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sheets", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    if len(args.runs) % 3:
        raise SystemExit("error: runs come as MODEL NAME DIR triples")
    runs = [args.runs[i : i + 3] for i in range(0, len(args.runs), 3)]
    report = {}
    for model, name, directory in runs:
        report.setdefault(model, {})[name] = {"dir": directory, "photos": measure(directory)}
    for model, settings in report.items():
        baseline = next(iter(settings.values()))["photos"]
        print(f"\n{model} (objective relative to `{next(iter(settings))}`):\n")
        print("| setting | objective | gain over source | HF share | strength (RMS, 8-bit) | time (6 photos) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, entry in settings.items():
            p = entry["photos"]
            names = list(p)
            entry["objective"] = geomean([p[n]["after"] / baseline[n]["after"] for n in names])
            entry["gain"] = geomean([p[n]["after"] / p[n]["before"] for n in names])
            entry["hf"] = float(np.mean([p[n]["hf"] for n in names]))
            entry["rms"] = float(np.mean([p[n]["rms"] for n in names]))
            entry["seconds"] = sum(p[n]["seconds"] for n in names)
            print(
                f"| {name} | {entry['objective']:.3f} | {entry['gain']:.2f} | {entry['hf']:.3f} | "
                f"{entry['rms']:.1f} | {entry['seconds']:.1f} s |"
            )
            if args.sheets:
                os.makedirs(args.sheets, exist_ok=True)
                slug = name.replace("+", "-").replace("_", "-")
                path = os.path.join(args.sheets, f"quality-{model}-{slug}.jpg")
                sheet(entry["dir"], names, f"{model}, {name}: dream and 1:1 centre crop", path)
        print("\nper photo: objective relative / HF share")
        for name, entry in settings.items():
            p = entry["photos"]
            cells = " ".join(f"{n}={p[n]['after'] / baseline[n]['after']:.2f}/{p[n]['hf']:.2f}" for n in p)
            print(f"  {name}: {cells}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
