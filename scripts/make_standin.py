#!/usr/bin/env python3
"""Renders MNIST digits into ImageNet-sized RGB scenes: the "stand-in" image-folder data set.

No pretrained ImageNet weights can be downloaded here, so blindspot trains an AlexNet-layout network at
224x224 on this data set instead (scripts/export_standin.py builds the network, scripts/probe_standin_training.py
is the PyTorch reference for training it). Each image is a SIZE x SIZE RGB scene (default 256, i.e. the
usual resize-256 / crop-224 pipeline) with one MNIST digit on it:

  background  solid colour, linear or radial gradient, stripes, checkerboard or smooth "perlin-like" blobs
              (2-3 octaves of bicubically upsampled random grids), optionally with pixel noise;
  clutter     0-6 random lines / rectangles / ellipses / zigzags behind the digit, sometimes 1-2 thin
              lines over it;
  digit       the MNIST stroke (cropped to its bounding box) scaled to a height of 60-200 px (log-uniform),
              rotated by up to +-15 degrees, placed at a random position inside the central
              (SIZE-32)x(SIZE-32) window (so a centre crop of 224 from 256 always shows the whole digit),
              filled with a random colour whose luminance differs from the background under it by at least
              0.3 + that background's luminance spread (so textures never hide it), sometimes with a
              2-colour gradient fill or a drop shadow;
  finish      sometimes a slight Gaussian blur and/or Gaussian pixel noise.

Train images come from MNIST's training set, val images from MNIST's test set (disjoint sources); per class,
the source indices are drawn without replacement (with replacement only when more images than sources are
asked for). Every image has its own random stream, numpy PCG64 seeded with (seed, split, class, k), so the
same seed gives byte-identical files (for the same numpy/Pillow/zlib), independently of the order of work.

Layout (torchvision ImageFolder): OUT/train/<class>/<k:05d>.<ext>, OUT/val/<class>/<k:05d>.<ext>, class
folders 0..9; OUT/manifest.json holds the generator version, options, counts, and for each file its label,
MNIST split and index, and its drawing parameters.

Format: PNG by default. PNG is lossless, so every decoder (Pillow, Rust's `image` crate) sees exactly the
same pixels, and the files are byte-stable; JPEG (`--format jpg`, quality 95, 4:4:4 chroma) is ~4x smaller,
but JPEG decoders differ in IDCT / upsampling rounding, so Python and Rust would see slightly different
pixels.

Example:
  python scripts/make_standin.py --out runs/standin --seed 0 --train-per-class 500 --val-per-class 100
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

GENERATOR_VERSION = "standin-1"
SPLITS = {"train": ("train", 0), "val": ("t10k", 1)}  # our split -> (MNIST file prefix, stream id)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def load_mnist(folder, prefix):
    with gzip.open(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x, y


# ----------------------------------------------------------------------------------------------- drawing

def rand_colour(rng):
    return rng.random(3).astype(np.float32)


def background(rng, s):
    """[s, s, 3] float32 in [0, 1] and a description."""
    kind = rng.choice(["solid", "linear", "radial", "stripes", "checker", "blobs"],
                      p=[0.15, 0.2, 0.1, 0.2, 0.15, 0.2])
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    c1 = rand_colour(rng)
    # textures: the second colour is a moderate step away from the first, so a contrasting digit colour exists
    step = rng.uniform(-0.45, 0.45, 3).astype(np.float32)
    c2 = np.clip(c1 + step, 0, 1)
    if kind == "solid":
        t = np.zeros((s, s), np.float32)
    elif kind == "linear":
        a = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(a) + yy * np.sin(a)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        c2 = rand_colour(rng)
    elif kind == "radial":
        cx, cy = rng.uniform(0, 1, 2)
        t = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        t = t / max(t.max(), 1e-6)
        c2 = rand_colour(rng)
    elif kind == "stripes":
        a = rng.uniform(0, np.pi)
        period = rng.uniform(6, 48) / s
        u = (xx * np.cos(a) + yy * np.sin(a)) / period
        if rng.random() < 0.5:
            t = (np.floor(u) % 2).astype(np.float32)
        else:
            t = 0.5 + 0.5 * np.sin(2 * np.pi * u).astype(np.float32)
    elif kind == "checker":
        a = rng.uniform(0, np.pi / 2)
        cell = rng.uniform(8, 40) / s
        u = (xx * np.cos(a) + yy * np.sin(a)) / cell
        v = (-xx * np.sin(a) + yy * np.cos(a)) / cell
        t = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    else:  # blobs: octaves of bicubically upsampled random grids, normalised to [0, 1]
        t = np.zeros((s, s), np.float32)
        g, amp = int(rng.integers(2, 6)), 1.0
        for _ in range(int(rng.integers(2, 4))):
            grid = rng.random((g, g)).astype(np.float32)
            t += amp * np.asarray(Image.fromarray(grid, "F").resize((s, s), Image.BICUBIC))
            g, amp = g * 2, amp * 0.5
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c1 + t[..., None] * (c2 - c1)
    return img.astype(np.float32), str(kind)


def clutter(rng, draw, s, n, thin=False, keep_out=None):
    """n random shapes drawn with PIL on `draw`; returns their kinds. Filled shapes stay clear of the box
    `keep_out` (x0, y0, x1, y1), so they never sit under the digit and eat its contrast."""
    kinds = []
    for _ in range(n):
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = "line" if thin else str(rng.choice(["line", "rect", "ellipse", "filled", "zigzag"]))
        w = int(rng.integers(1, 3)) if thin else int(rng.integers(1, 6))
        if kind == "line":
            p = rng.uniform(-0.1 * s, 1.1 * s, 4)
            draw.line([tuple(p[:2]), tuple(p[2:])], fill=col, width=w)
        elif kind in ("rect", "ellipse", "filled"):
            for _ in range(20):
                c = rng.uniform(0, s, 2)
                half = rng.uniform(5, 50 if kind == "filled" else 70, 2)
                box = [c[0] - half[0], c[1] - half[1], c[0] + half[0], c[1] + half[1]]
                if kind != "filled" or keep_out is None or box[2] < keep_out[0] or box[0] > keep_out[2] \
                        or box[3] < keep_out[1] or box[1] > keep_out[3]:
                    break
            else:
                kind = "ellipse"  # no free spot: an outline instead
            if kind == "rect":
                draw.rectangle(box, outline=col, width=w)
            elif kind == "ellipse":
                draw.ellipse(box, outline=col, width=w)
            elif rng.random() < 0.5:
                draw.rectangle(box, fill=col)
            else:
                draw.ellipse(box, fill=col)
        else:  # zigzag
            k = int(rng.integers(3, 7))
            p = np.cumsum(rng.uniform(-40, 40, (k, 2)), 0) + rng.uniform(0, s, 2)
            draw.line([tuple(q) for q in p], fill=col, width=w)
        kinds.append(kind)
    return kinds


def digit_mask(rng, img28, s, margin):
    """The digit's alpha mask [h, w] float32 in [0, 1] (scaled, rotated) and its parameters."""
    ys, xs = np.nonzero(img28 > 0)
    crop = img28[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    height = float(np.exp(rng.uniform(np.log(60), np.log(200))))
    angle = float(rng.uniform(-15, 15))
    scale = height / crop.shape[0]
    m = Image.fromarray(crop, "L")
    m = m.resize((max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))), Image.BICUBIC)
    m = m.rotate(angle, resample=Image.BICUBIC, expand=True)
    room = s - 2 * margin
    if max(m.size) > room:  # the rotated box must fit the centre window
        f = room / max(m.size)
        m = m.resize((max(1, int(m.size[0] * f)), max(1, int(m.size[1] * f))), Image.BICUBIC)
        height *= f
    return np.asarray(m, np.float32) / 255.0, height, angle


def contrasting_colour(rng, region, alpha):
    """A colour whose luminance differs from the alpha-weighted background under the digit by at least
    0.3 + 1 std of that background's luminance (capped, so some colour always qualifies)."""
    lum = region @ LUMA
    wsum = alpha.sum() + 1e-6
    mean = float((lum * alpha).sum() / wsum)
    std = float(np.sqrt(((lum - mean) ** 2 * alpha).sum() / wsum))
    need = min(0.3 + std, max(mean, 1 - mean) - 0.05)
    cands = rng.random((64, 3)).astype(np.float32)
    ok = np.abs(cands @ LUMA - mean) >= need
    if ok.any():
        return cands[np.argmax(ok)], mean
    return (np.zeros(3, np.float32) if mean > 0.5 else np.ones(3, np.float32)), mean


def render(rng, img28, s):
    """One scene: uint8 [s, s, 3] and its parameters."""
    margin = 16 * s // 256
    bg, bg_kind = background(rng, s)
    a, height, angle = digit_mask(rng, img28, s, margin)
    h, w = a.shape
    y0 = int(rng.integers(margin, s - margin - h + 1))
    x0 = int(rng.integers(margin, s - margin - w + 1))
    im = Image.fromarray(np.round(bg * 255).astype(np.uint8), "RGB")
    n_clutter = int(rng.integers(0, 7))
    kinds = clutter(rng, ImageDraw.Draw(im), s, n_clutter, keep_out=(x0, y0, x0 + w, y0 + h))
    img = np.asarray(im, np.float32) / 255.0
    region = img[y0:y0 + h, x0:x0 + w]
    col, bg_lum = contrasting_colour(rng, region, a)
    fill = "solid"
    colour = np.broadcast_to(col, region.shape)
    if rng.random() < 0.25:  # 2-colour gradient fill, the second colour as contrasting as the first
        col2, _ = contrasting_colour(rng, region, a)
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        colour = col + t * (col2 - col)
        fill = "gradient"
    shadow = rng.random() < 0.15
    if shadow:  # a dark / light offset copy under the digit
        d = int(rng.integers(2, 7))
        sh = np.zeros((s, s), np.float32)
        sh[y0 + d:y0 + d + h, x0 + d:x0 + d + w] = a[: s - y0 - d, : s - x0 - d]
        shade = 0.0 if float(col @ LUMA) > 0.5 else 1.0
        img = img * (1 - 0.6 * sh[..., None]) + 0.6 * sh[..., None] * shade
    a3 = a[..., None]
    img[y0:y0 + h, x0:x0 + w] = img[y0:y0 + h, x0:x0 + w] * (1 - a3) + colour * a3
    im = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")
    over = int(rng.integers(1, 3)) if rng.random() < 0.3 else 0
    kinds += clutter(rng, ImageDraw.Draw(im), s, over, thin=True)
    blur = float(rng.uniform(0.4, 1.2)) if rng.random() < 0.2 else 0.0
    if blur:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    noise = float(rng.uniform(2, 10)) if rng.random() < 0.35 else 0.0
    out = np.asarray(im)
    if noise:
        out = np.clip(out + rng.normal(0, noise, out.shape), 0, 255).round().astype(np.uint8)
    params = {"bg": bg_kind, "clutter": kinds, "height": round(height, 1), "angle": round(angle, 1),
              "x": x0, "y": y0, "w": w, "h": h, "colour": [round(float(c), 3) for c in col],
              "bg_luma": round(bg_lum, 3), "fill": fill, "shadow": bool(shadow), "blur": round(blur, 2),
              "noise": round(noise, 2)}
    return out, params


# ----------------------------------------------------------------------------------------------- main

def choose_sources(labels, per_class, seed, stream):
    """Per class: `per_class` MNIST indices, without replacement while the pool lasts."""
    rng = np.random.default_rng([seed, stream, 999])
    out = {}
    for c in range(10):
        pool = np.flatnonzero(labels == c)
        reps = -(-per_class // len(pool))
        idx = np.concatenate([rng.permutation(pool) for _ in range(reps)])[:per_class]
        out[c] = [int(i) for i in idx]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-per-class", type=int, default=500)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--format", choices=["png", "jpg"], default="png",
                    help="png: lossless, decoder-independent pixels (default); jpg: quality 95, 4:4:4")
    ap.add_argument("--mnist", default=os.path.join(os.path.dirname(__file__), "..", "assets", "mnist"))
    args = ap.parse_args()
    if args.size < 64:
        sys.exit("--size must be at least 64")

    manifest = {"generator": GENERATOR_VERSION, "seed": args.seed, "size": args.size, "format": args.format,
                "classes": [str(c) for c in range(10)],
                "counts": {}, "files": []}
    t0 = time.time()
    total = 0
    for split, per_class in (("train", args.train_per_class), ("val", args.val_per_class)):
        prefix, stream = SPLITS[split]
        x, y = load_mnist(args.mnist, prefix)
        sources = choose_sources(y, per_class, args.seed, stream)
        for c in range(10):
            d = os.path.join(args.out, split, str(c))
            os.makedirs(d, exist_ok=True)
            for k, src in enumerate(sources[c]):
                rng = np.random.default_rng([args.seed, stream, c, k])
                img, params = render(rng, x[src], args.size)
                name = f"{split}/{c}/{k:05d}.{args.format}"
                im = Image.fromarray(img, "RGB")
                if args.format == "png":
                    im.save(os.path.join(args.out, name), format="PNG")
                else:
                    im.save(os.path.join(args.out, name), format="JPEG", quality=95, subsampling=0)
                manifest["files"].append({"file": name, "label": c, "mnist_split": prefix, "mnist_index": src,
                                          **params})
                total += 1
            print(f"{split}/{c}: {per_class} images, {total / (time.time() - t0):.1f} images/s", flush=True)
        manifest["counts"][split] = {str(c): per_class for c in range(10)}
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=0, separators=(",", ":"))
        f.write("\n")
    dt = time.time() - t0
    print(f"wrote {total} images to {args.out} in {dt:.1f} s ({total / dt:.1f} images/s)")


if __name__ == "__main__":
    main()
