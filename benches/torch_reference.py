"""PyTorch side of scripts/bench: the same dream step and octave dream as dreamvid's, on the
same VGG19 weights and input, timed in-process.

This is the reference article's algorithm (forward to features[:31], L2 norm, gradient on the
input only, weights frozen) brought to what dreamvid does per step: random roll (jitter),
Gaussian smoothing of the gradient, step normalised by mean |g|, clamp; octaves at native
resolution with antialiased bicubic resizing and detail transfer.

usage: torch_reference.py WEIGHTS.safetensors H W MODE RUNS THREADS [OCTAVES ITERATIONS]
  MODE: step (one dream step) or octaves (a whole octave dream); prints one RESULT line per
  timed run and a PEAK line (peak RSS in bytes).
"""
import math
import sys
import time
import resource

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

VGG19 = [2, 2, 4, 4, 4]


def build(weights):
    layers, index = [], 0
    for convs in VGG19:
        for _ in range(convs):
            conv = torch.nn.Conv2d(weights[f"features.{index}.weight"].shape[1], weights[f"features.{index}.weight"].shape[0], 3, padding=1)
            conv.weight.data.copy_(weights[f"features.{index}.weight"])
            conv.bias.data.copy_(weights[f"features.{index}.bias"])
            layers += [conv, torch.nn.ReLU(inplace=False)]
            index += 2
        layers.append(torch.nn.MaxPool2d(2, 2))
        index += 1
    model = torch.nn.Sequential(*layers)[:31].eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def gaussian(sigma):
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma * sigma))
    return k / k.sum(), r


def blur(g, sigma):
    k, r = gaussian(sigma)
    n, c, h, w = g.shape
    x = g.reshape(n * c, 1, h, w)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return x.reshape(n, c, h, w)


def ascend(model, x, gen, step=0.01, jitter=16, smooth=0.5):
    dy, dx = [int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen)]
    shifted = torch.roll(x, (dy, dx), (2, 3)).detach().requires_grad_(True)
    model((shifted - MEAN) / STD).norm().backward()
    g = blur(torch.roll(shifted.grad, (-dy, -dx), (2, 3)), smooth)
    return (x + g * (step / (g.abs().mean() + 1e-12))).clamp(0, 1)


def octave_dream(model, image, gen, octaves, iterations, scale=1.4):
    _, _, h, w = image.shape
    sizes = [(h, w)]
    for i in range(1, octaves):
        s = (round(h / scale**i), round(w / scale**i))
        if min(s) < 32:
            break
        sizes.append(s)
    pyramid = [image] + [F.interpolate(image, size=s, mode="bicubic", antialias=True, align_corners=False) for s in sizes[1:]]
    detail = None
    for base in reversed(pyramid):
        x = base if detail is None else base + F.interpolate(detail, size=base.shape[2:], mode="bicubic", antialias=True, align_corners=False)
        for _ in range(iterations):
            x = ascend(model, x, gen)
        detail = x - base
    return x


def main():
    weights, h, w, mode, runs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    octaves, iterations = (int(v) for v in sys.argv[7:9]) if len(sys.argv) > 8 else (3, 3)
    torch.set_num_threads(threads)
    model = build(load_file(weights))
    gen = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    image = torch.stack([0.2 + 0.6 * xs, 0.15 + 0.7 * ys, 0.3 + 0.4 * (1 - xs)]).unsqueeze(0)
    work = (lambda: ascend(model, image, gen)) if mode == "step" else (lambda: octave_dream(model, image, gen, octaves, iterations))
    work()
    for _ in range(runs):
        t = time.perf_counter()
        work()
        print(f"RESULT torch {mode} {w}x{h} {time.perf_counter() - t:.5f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"PEAK torch {mode} {w}x{h} {peak}")


if __name__ == "__main__":
    main()
