"""PyTorch side of scripts/bench: the same dream step and octave dream as dreamvid's, on the
same weights and input, timed in-process.

This is the reference article's algorithm (forward to VGG19's features[:31] or to GoogLeNet's
inception4c, L2 norm, gradient on the input only, weights frozen) brought to what dreamvid does
per step: random roll (jitter), Gaussian smoothing of the gradient, step normalised by mean |g|,
clamp; octaves at native resolution with antialiased bicubic resizing and detail transfer.
GoogLeNet is torchvision's definition (BasicConv2d with BatchNorm eps 1e-3 in eval mode,
ceil-mode pools, 3x3 "5x5" branches, transform_input), loaded from the same torchvision-keyed
file.

usage: torch_reference.py MODEL WEIGHTS.safetensors H W MODE RUNS THREADS [OCTAVES ITERATIONS]
  MODEL: vgg19 or googlenet; MODE: step (one dream step) or octaves (a whole octave dream);
  prints one RESULT line per timed run and a PEAK line (peak RSS in bytes).
"""
import collections
import math
import sys
import time
import resource

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

VGG19 = [2, 2, 4, 4, 4]


class Normalize(torch.nn.Module):
    """(x - mean) / std per channel."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_vgg19(weights):
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
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return frozen(torch.nn.Sequential(Normalize(mean, std), *layers[:31]))


class BasicConv2d(torch.nn.Module):
    """torchvision's: convolution without bias, BatchNorm (eps 1e-3), in-place ReLU."""

    def __init__(self, cin, cout, kernel, stride=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = torch.nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(torch.nn.Module):
    """torchvision's Inception block (its "5x5" branch is 3x3, vision#906)."""

    def __init__(self, cin, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1x1, 1)
        self.branch2 = torch.nn.Sequential(BasicConv2d(cin, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3))
        self.branch3 = torch.nn.Sequential(BasicConv2d(cin, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3))
        self.branch4 = torch.nn.Sequential(
            torch.nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(cin, pool_proj, 1)
        )

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


GOOGLENET = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
             "inception4a", "inception4b", "inception4c"]
BRANCH_CONVS = ["branch1", "branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1"]


def build_googlenet(weights):
    """torchvision's GoogLeNet up to inception4c, widths from the file; transform_input applied
    to ImageNet-normalised input is 2x - 1."""
    modules, channels = collections.OrderedDict(), 3
    for name in GOOGLENET:
        if name.startswith("conv"):
            out, _, kernel, _ = weights[f"{name}.conv.weight"].shape
            modules[name] = BasicConv2d(channels, out, kernel, stride=2 if name == "conv1" else 1)
            channels = out
        elif name.startswith("maxpool"):
            modules[name] = torch.nn.MaxPool2d(2 if name == "maxpool4" else 3, stride=2, ceil_mode=True)
        else:
            widths = [weights[f"{name}.{b}.conv.weight"].shape[0] for b in BRANCH_CONVS]
            modules[name] = Inception(channels, *widths)
            channels = widths[0] + widths[2] + widths[4] + widths[5]
    model = torch.nn.Sequential(modules)
    missing = model.load_state_dict(weights, strict=False).missing_keys
    if missing:
        sys.exit(f"weights lack {missing[:3]} ...")
    half = torch.full((1, 3, 1, 1), 0.5)
    return frozen(torch.nn.Sequential(Normalize(half, half), model))


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
    model(shifted).norm().backward()
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
    name, weights, h, w, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    runs, threads = int(sys.argv[6]), int(sys.argv[7])
    octaves, iterations = (int(v) for v in sys.argv[8:10]) if len(sys.argv) > 9 else (3, 3)
    torch.set_num_threads(threads)
    model = {"vgg19": build_vgg19, "googlenet": build_googlenet}[name](load_file(weights))
    gen = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    image = torch.stack([0.2 + 0.6 * xs, 0.15 + 0.7 * ys, 0.3 + 0.4 * (1 - xs)]).unsqueeze(0)
    work = (lambda: ascend(model, image, gen)) if mode == "step" else (lambda: octave_dream(model, image, gen, octaves, iterations))
    work()
    for _ in range(runs):
        t = time.perf_counter()
        work()
        print(f"RESULT torch {name}/{mode} {w}x{h} {time.perf_counter() - t:.5f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"PEAK torch {name}/{mode} {w}x{h} {peak}")


if __name__ == "__main__":
    main()
