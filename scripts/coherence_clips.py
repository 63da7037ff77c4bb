"""Realistic test clips for scripts/coherence-bench, filmed from real photos.

Each clip films scikit-image's CC0 sample photos (put into .coherence-data/photos/ by
scripts/coherence-bench) with a virtual camera, the way footage comes out of a real one:

- the camera path is sub-pixel (bicubic resampling of the photo, cv2.warpAffine);
- moving objects are cut out of another photo with a soft edge and composited over the scene,
  motion-blurred over half a frame (a 180-degree shutter) when fast;
- every frame gets its own Gaussian sensor noise, independent per channel and correlated over
  about a pixel as demosaicing leaves it (see `sensor`);
- the frames are then H.264-encoded (libx264 from imageio-ffmpeg's FFmpeg, ENCODE below), so the
  codec's noise, blocking and GOP pulsing are real; the bench decodes the file as it decodes the
  real clips.

Everything is seeded (numpy's default_rng, one seed per clip), so the same parameters give the
same file: .coherence-data/synth/NAME-HASH.mp4, HASH a hash of the parameters (change one, or
VERSION when the code that films changes, and the clip is filmed again).

The clips (FRAMES frames at FPS, at most 640 wide):
  plain-static  fixed camera on rocket.jpg (a large plain evening sky); a soft-edged cut-out of
                coffee.png's cup drifts across the sky at 1.5 px/frame; noise sigma 2/255
  handheld      a handheld camera over motorcycle_left.png (plain wall and concrete floor):
                a smooth random sub-pixel path (low-passed random walk, 1 px/frame on average)
                with a slight roll (0.25 degrees rms); noise 2/255
  dolly         a slow zoom-in (0.4 %/frame, 1.37x in all) on astronaut.png (plain backdrop),
                drifting towards the face; noise 2/255
  fast          fixed camera on camera.png (black and white: plain sky, a lawn); the
                astronaut's helmet, cut out, flies back and forth at 14-15 px/frame,
                motion-blurred; noise 2/255
  lowlight      coffee.png at night: 25 % brightness with a gamma of 1.2 (shadows crushed),
                noise sigma 6/255, a slow drift (0.37 px/frame)
  cuts-fades    chelsea.png, a hard cut to coffee.png, a 12-frame cross-fade to
                motorcycle_right.png; each shot drifts slightly its own way; noise 2/255
"""

import hashlib
import json
import math
import subprocess
import sys

import cv2
import numpy as np

VERSION = 1  # bump when the filming code changes (the clips' hash includes it)
FPS = 25
FRAMES = 80
ENCODE = dict(codec="libx264", crf=21, preset="medium", gop=50, pix_fmt="yuv420p")
SHUTTER = 0.5  # exposure of a frame, in frame times (motion blur of fast objects)
BLUR_SAMPLES = 8  # sub-frame positions averaged for the motion blur
NOISE_GRAIN = 0.7  # px: the spatial correlation of the sensor noise

# name: (footage class, photos, parameters). Coordinates are in the photo's pixels; `size` is
# the clip's (width, height).
CLIPS = {
    "plain-static": ("static camera, plain sky, slow object", "rocket.jpg + coffee.png's cup", dict(
        seed=1, photo="rocket.jpg", size=[640, 426], centre=[320, 213], noise=2,
        object=dict(photo="coffee.png", centre=[291, 118], radius=118, scale=0.38, feather=3,
                    start=[130, 70], velocity=[1.5, 0.25]))),
    "handheld": ("handheld camera (random sub-pixel path, roll)", "motorcycle_left.png", dict(
        seed=2, photo="motorcycle_left.png", size=[576, 384], centre=[370, 250], noise=2,
        speed=1.0, smooth=6, roll_deg=0.25, roll_smooth=10, margin=[70, 50])),
    "dolly": ("zoom-in (dolly)", "astronaut.png", dict(
        seed=3, photo="astronaut.png", size=[480, 360], noise=2,
        scale=0.96, zoom=1.004, centre=[256, 190], target=[232, 150])),
    "fast": ("fast object over a static B&W shot", "camera.png + astronaut.png's helmet", dict(
        seed=4, photo="camera.png", size=[512, 384], centre=[256, 192], noise=2,
        object=dict(photo="astronaut.png", centre=[390, 440], radius=70, scale=0.5, feather=3,
                    x_range=[50, 462], speed_x=14, y=95, bob=30, bob_period=40))),
    "lowlight": ("low light, strong noise, drift", "coffee.png", dict(
        seed=5, photo="coffee.png", size=[560, 368], centre=[286, 196], drift=[0.35, 0.12],
        brightness=0.25, gamma=1.2, noise=6)),
    "cuts-fades": ("a hard cut and a cross-fade", "chelsea.png, coffee.png, motorcycle_right.png", dict(
        seed=6, size=[432, 288], noise=2, fade=[52, 12], shots=[
            dict(photo="chelsea.png", fit=1.0, centre=[220, 148], drift=[0.3, 0.1], frames=[0, 27]),
            dict(photo="coffee.png", fit=0.8, centre=[246, 160], drift=[-0.35, 0.1], frames=[28, 63]),
            dict(photo="motorcycle_right.png", fit=0.64, centre=[230, 165], drift=[0.25, -0.1], frames=[52, 79])])),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Filming


def load(photos, name, fit=1.0):
    """A photo as float32 BGR in 0..255 (grey photos get three equal channels), shrunk by `fit`
    with pixel-area averaging (no aliasing)."""
    img = cv2.imread(str(photos / name), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"error: cannot read {photos / name} (scripts/coherence-bench fetches the photos)")
    if fit != 1.0:
        img = cv2.resize(img, None, fx=fit, fy=fit, interpolation=cv2.INTER_AREA)
    return img.astype(np.float32)


def camera(photo, size, centre, scale=1.0, angle=0.0):
    """What a camera of `size` (w, h) pointed at `centre` (photo pixels, sub-pixel) sees, with
    `scale` output pixels per photo pixel and rolled by `angle` radians (bicubic; the photo's
    edge is mirrored, though the clips keep their windows inside the photo)."""
    w, h = size
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    # output pixel (u, v) -> photo point centre + R(angle) (u - w/2, v - h/2) / scale
    m = np.float64([[c, -s, centre[0] - c * w / 2 + s * h / 2],
                    [s, c, centre[1] - s * w / 2 - c * h / 2]])
    return cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT_101)


def cutout(photos, spec, grey=False):
    """A round patch of a photo (premultiplied BGR and alpha, float32), shrunk by spec's
    `scale`, with an edge that fades out over `feather` pixels (of the shrunk patch)."""
    img = load(photos, spec["photo"])
    if grey:
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    (cx, cy), r = spec["centre"], spec["radius"]
    patch = img[cy - r : cy + r, cx - r : cx + r]
    size = int(round(2 * r * spec["scale"]))
    patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    edge = size / 2 - np.hypot(xx, yy)  # distance inside the circle
    t = np.clip(edge / spec["feather"], 0, 1)
    alpha = t * t * (3 - 2 * t)  # smoothstep
    return patch * alpha[..., None], alpha


def composite(frame, obj, positions):
    """`frame` with the cut-out `obj` (premultiplied colour, alpha) over it, its centre at each
    of `positions` (sub-pixel, bilinear) in turn and averaged: one position is a sharp object,
    several along its path are its motion blur."""
    colour, alpha = obj
    h, w = frame.shape[:2]
    half = (alpha.shape[1] - 1) / 2, (alpha.shape[0] - 1) / 2
    acc_c = np.zeros_like(frame)
    acc_a = np.zeros(frame.shape[:2], np.float32)
    for x, y in positions:
        m = np.float64([[1, 0, x - half[0]], [0, 1, y - half[1]]])
        acc_c += cv2.warpAffine(colour, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        acc_a += cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    k = len(positions)
    return frame * (1 - acc_a[..., None] / k) + acc_c / k


def shutter(path, t):
    """The positions an object on `path` (a function of the time in frames) passes while frame
    `t` is exposed."""
    return [path(t + SHUTTER * (i + 0.5) / BLUR_SAMPLES - SHUTTER / 2) for i in range(BLUR_SAMPLES)]


def smooth_noise(rng, n, dims, sigma):
    """n samples of `dims` Gaussian white noises, each low-passed by a Gaussian of `sigma`
    samples (no edge effects: the noise is drawn longer and trimmed)."""
    pad = int(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-pad, pad + 1) / sigma) ** 2)
    taps /= taps.sum()
    raw = rng.standard_normal((n + 2 * pad, dims))
    return np.stack([np.convolve(raw[:, i], taps, mode="valid") for i in range(dims)], 1)


def sensor(frames, rng, sigma):
    """Frames as a camera's sensor and demosaicing leave them: Gaussian noise of `sigma`
    (0..255 units) per pixel, independent per frame and channel, correlated over about a pixel
    (white noise blurred by a Gaussian of NOISE_GRAIN px, rescaled to `sigma`; white noise
    would be mostly smoothed away by the encoder, real sensor noise is not), rounded to 8 bits."""
    k = cv2.getGaussianKernel(7, NOISE_GRAIN)
    gain = sigma / float((k**2).sum())  # the blur scales the noise's std by sum(k^2) (2-D)
    out = []
    for f in frames:
        white = rng.standard_normal(f.shape).astype(np.float32)
        grain = cv2.sepFilter2D(white, -1, k, k, borderType=cv2.BORDER_REFLECT_101)
        out.append(np.clip(f + gain * grain, 0, 255).round().astype(np.uint8))
    return out


def plain_static(p, rng, photos):
    """Fixed camera; a soft-edged cut-out moves slowly across the plain region."""
    scene = camera(load(photos, p["photo"]), p["size"], p["centre"])
    o = p["object"]
    obj = cutout(photos, o)
    path = lambda t: (o["start"][0] + o["velocity"][0] * t, o["start"][1] + o["velocity"][1] * t)
    return [composite(scene, obj, [path(t)]) for t in range(FRAMES)]


def handheld(p, rng, photos):
    """A smooth random walk of the camera (velocity = low-passed noise, scaled to `speed`
    px/frame on average) with a slight random roll, kept inside `margin` of the centre."""
    photo = load(photos, p["photo"])
    vel = smooth_noise(rng, FRAMES, 2, p["smooth"])
    vel *= p["speed"] / np.hypot(vel[:, 0], vel[:, 1]).mean()
    pos = np.cumsum(vel, 0)
    pos -= pos.mean(0)
    reach = np.abs(pos).max(0) / np.float64(p["margin"])
    if reach.max() > 1:  # never leave the photo: a slower walk rather than a mirrored edge
        pos /= reach.max()
    roll = smooth_noise(rng, FRAMES, 1, p["roll_smooth"])[:, 0]
    roll *= math.radians(p["roll_deg"]) / np.sqrt((roll**2).mean())
    return [camera(photo, p["size"], np.float64(p["centre"]) + pos[t], 1.0, roll[t]) for t in range(FRAMES)]


def dolly(p, rng, photos):
    """Zoom in by `zoom` per frame from `scale`, the centre moving from `centre` to `target`
    in step with the zoom."""
    photo = load(photos, p["photo"])
    c0, c1 = np.float64(p["centre"]), np.float64(p["target"])
    end = p["zoom"] ** (FRAMES - 1) - 1
    frames = []
    for t in range(FRAMES):
        z = p["zoom"] ** t
        frames.append(camera(photo, p["size"], c0 + (c1 - c0) * (z - 1) / end, p["scale"] * z))
    return frames


def fast(p, rng, photos):
    """Fixed black-and-white camera; a cut-out flies back and forth (bouncing off `x_range`)
    at `speed_x` px/frame while bobbing up and down, motion-blurred."""
    scene = camera(load(photos, p["photo"]), p["size"], p["centre"])
    o = p["object"]
    obj = cutout(photos, o, grey=True)
    lo, hi = o["x_range"]

    def path(t):
        u = (o["speed_x"] * t) % (2 * (hi - lo))
        x = lo + (u if u <= hi - lo else 2 * (hi - lo) - u)
        return x, o["y"] + o["bob"] * math.sin(2 * math.pi * t / o["bob_period"])

    return [composite(scene, obj, shutter(path, t)) for t in range(FRAMES)]


def lowlight(p, rng, photos):
    """The photo darkened (brightness x (I/255)^gamma) under a slow drift; the strong noise
    comes in `sensor`."""
    photo = load(photos, p["photo"])
    dark = 255 * p["brightness"] * (photo / 255) ** p["gamma"]
    c0, v = np.float64(p["centre"]), np.float64(p["drift"])
    return [camera(dark, p["size"], c0 + v * t) for t in range(FRAMES)]


def cuts_fades(p, rng, photos):
    """Shots of several photos, each drifting its own way over its frames; where two shots
    overlap (`fade`: first frame, length) the second fades in linearly; elsewhere a shot starts
    with a hard cut."""
    shots = [(load(photos, s["photo"], s["fit"]), s) for s in p["shots"]]
    start, length = p["fade"]
    frames = []
    for t in range(FRAMES):
        live = [(img, s) for img, s in shots if s["frames"][0] <= t <= s["frames"][1]]
        views = [camera(img, p["size"], np.float64(s["centre"]) + np.float64(s["drift"]) * (t - s["frames"][0]))
                 for img, s in live]
        if len(views) == 2:
            w = (t - start + 1) / (length + 1)
            frames.append((1 - w) * views[0] + w * views[1])
        else:
            frames.append(views[0])
    return frames


FILM = {"plain-static": plain_static, "handheld": handheld, "dolly": dolly, "fast": fast,
        "lowlight": lowlight, "cuts-fades": cuts_fades}


# ---------------------------------------------------------------------------------------------
# Encoding and the cache


def encode(frames, path):
    """H.264 in MP4 with imageio-ffmpeg's FFmpeg (libx264, ENCODE's settings)."""
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-",
           "-c:v", ENCODE["codec"], "-preset", ENCODE["preset"], "-crf", str(ENCODE["crf"]),
           "-g", str(ENCODE["gop"]), "-pix_fmt", ENCODE["pix_fmt"], "-threads", "2", str(path)]
    run = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True)
    if run.returncode != 0:
        raise SystemExit(f"error: FFmpeg could not encode {path}:\n{run.stderr.decode(errors='replace')}")


def clip_path(name, data):
    """Where clip `name` lives: its name and a hash of everything it is filmed and encoded with."""
    spec = {"name": name, "params": CLIPS[name][2], "fps": FPS, "frames": FRAMES, "encode": ENCODE,
            "shutter": [SHUTTER, BLUR_SAMPLES], "grain": NOISE_GRAIN, "version": VERSION}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return data / "synth" / f"{name}-{key}.mp4"


def make(name, data):
    """The H.264 file of clip `name`, filmed and encoded unless it is already there."""
    out = clip_path(name, data)
    if out.is_file():
        return out
    cls, photos_used, p = CLIPS[name]
    log(f"  filming {name} ({cls}; {photos_used}) -> {out}")
    rng = np.random.default_rng(p["seed"])
    frames = FILM[name](p, rng, data / "photos")
    frames = sensor(frames, rng, p["noise"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    encode(frames, tmp)
    tmp.replace(out)
    return out
