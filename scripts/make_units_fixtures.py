#!/usr/bin/env python3
"""Generates the small fixtures of the units / TorchScript / image-folder tests (tests/units.rs).

Writes into tests/fixtures/units/ (all files small, deterministic given torch 2.11 and Pillow):
  tiny_conv.pt          MNIST-shaped conv net [1,28,28] -> 10, with the layer protocol
                        (layer_names(), input_shape(), layer(x, name)); random weights, seed 0.
  tiny_conv_ref.safetensors   inputs x [4,1,28,28] and PyTorch's outputs of every layer (reference).
  tiny_rgb.pt           RGB net [3,32,32] -> 5 with ImageNet normalisation inside, layer protocol.
  plain.pt              forward() only (no protocol methods); adaptive pooling, accepts [3,224,224].
  bad_output.pt         forward() returns [B,5,1]: a model whose output shape does not fit.
  images/<class>/...    a class-folder data set (PNG/JPEG, RGB, grey, RGBA, various sizes).
  images_ref.safetensors      PIL reference of the preprocessing (resize shorter side 36, centre crop 32).
  images_flat/ + labels.txt   a flat folder with a label file.
  images_bad/           one good PNG, one corrupt .jpg, one .txt file.
  stats_ref.json        scipy references: entropy, Mann-Whitney U (two-sided, asymptotic, continuity).

Run: /work/main/.venv/bin/python scripts/make_units_fixtures.py [--out tests/fixtures/units]
     ... --mnist-conv /tmp/mnist_conv.pt   (only: the benchmark's MNIST conv net, random weights, not committed)
"""
import argparse
import json
import os
from typing import List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class TinyConv(nn.Module):
    """conv1 (1->4, 5x5) + ReLU -> max-pool 2 -> fc1 (576->16) + ReLU -> fc2 (16->10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 5)
        self.fc1 = nn.Linear(4 * 12 * 12, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        return self.layer(x, "logits")

    @torch.jit.export
    def layer_names(self) -> List[str]:
        return ["conv1", "pool1", "fc1", "logits"]

    @torch.jit.export
    def input_shape(self) -> List[int]:
        return [1, 28, 28]

    @torch.jit.export
    def layer(self, x: torch.Tensor, name: str) -> torch.Tensor:
        h = F.relu(self.conv1(x))  # [B,4,24,24]
        if name == "conv1":
            return h
        h = F.max_pool2d(h, 2)  # [B,4,12,12]
        if name == "pool1":
            return h
        h = F.relu(self.fc1(h.flatten(1)))  # [B,16]
        if name == "fc1":
            return h
        h = self.fc2(h)  # [B,10]
        if name == "logits":
            return h
        raise RuntimeError("unknown layer " + name)


class MnistConv(nn.Module):
    """A paper-like MNIST Conv net (conv -> max-pool -> FC -> dropout -> softmax) for benchmarks:
    conv1 (1->32, 5x5) + ReLU -> max-pool 2 (pool1: [32,12,12] = 4608 units) -> fc1 (4608->128) + ReLU
    -> fc2 (128->10). Random weights; not committed (written with --mnist-conv PATH)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5)
        self.fc1 = nn.Linear(32 * 12 * 12, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.layer(x, "logits")

    @torch.jit.export
    def layer_names(self) -> List[str]:
        return ["conv1", "pool1", "fc1", "logits"]

    @torch.jit.export
    def input_shape(self) -> List[int]:
        return [1, 28, 28]

    @torch.jit.export
    def layer(self, x: torch.Tensor, name: str) -> torch.Tensor:
        h = F.relu(self.conv1(x))  # [B,32,24,24]
        if name == "conv1":
            return h
        h = F.max_pool2d(h, 2)  # [B,32,12,12]
        if name == "pool1":
            return h
        h = F.relu(self.fc1(h.flatten(1)))  # [B,128]
        if name == "fc1":
            return h
        h = self.fc2(h)
        if name == "logits":
            return h
        raise RuntimeError("unknown layer " + name)


class TinyRgb(nn.Module):
    """Normalise (ImageNet mean/std) -> conv (3->4, 3x3, stride 2) + ReLU -> fc (4*15*15 -> 5)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 15 * 15, 5)

    def forward(self, x):
        return self.layer(x, "fc")

    @torch.jit.export
    def layer_names(self) -> List[str]:
        return ["conv", "fc"]

    @torch.jit.export
    def input_shape(self) -> List[int]:
        return [3, 32, 32]

    @torch.jit.export
    def layer(self, x: torch.Tensor, name: str) -> torch.Tensor:
        h = F.relu(self.conv((x - self.mean) / self.std))  # [B,4,15,15]
        if name == "conv":
            return h
        h = self.fc(h.flatten(1))  # [B,5]
        if name == "fc":
            return h
        raise RuntimeError("unknown layer " + name)


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(2 * 4 * 4, 7)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.conv(x), 4).flatten(1))


class BadOutput(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :5].unsqueeze(-1)  # [B,5,1]: not [B, classes]


def save_script(m: nn.Module, path: str):
    m.eval()
    torch.jit.script(m).save(path)


def preprocess_pil(path: str, resize: int, crop: int) -> torch.Tensor:
    """torchvision's Resize(resize) + CenterCrop(crop) + ToTensor, written out with PIL (bilinear, antialias)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    img = img.resize((nw, nh), Image.BILINEAR)
    top = int(round((nh - crop) / 2.0))
    left = int(round((nw - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    a = np.asarray(img, dtype=np.float32) / 255.0  # [H,W,3]
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


def smooth_image(rng, h, w, base):
    """A smooth colour field (so that JPEG artefacts and resampling differences stay small)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    f = rng.uniform(0.5, 2.0, size=3)
    img = np.stack(
        [base[c] * 0.6 + 0.4 * (0.5 + 0.5 * np.sin(f[c] * (xx / w * 3 + yy / h * 2) + c)) for c in range(3)],
        axis=-1,
    )
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_images(out: str):
    rng = np.random.default_rng(0)
    classes = {"blue": (0.1, 0.2, 0.9), "green": (0.1, 0.8, 0.2), "red": (0.9, 0.1, 0.1)}
    sizes = [(40, 48), (60, 36), (36, 36)]
    files = []
    for ci, (cname, base) in enumerate(sorted(classes.items())):
        d = os.path.join(out, "images", cname)
        os.makedirs(d, exist_ok=True)
        for k, (h, w) in enumerate(sizes):
            arr = smooth_image(rng, h, w, base)
            if k == 0:
                p = os.path.join(d, f"{cname}_{k}.png")
                Image.fromarray(arr).save(p)
            elif k == 1:
                p = os.path.join(d, f"{cname}_{k}.jpg")
                Image.fromarray(arr).save(p, quality=95)
            else:
                if ci == 0:  # grey PNG
                    p = os.path.join(d, f"{cname}_{k}.png")
                    Image.fromarray(arr[..., 1]).save(p)
                else:  # RGBA PNG (alpha ignored)
                    p = os.path.join(d, f"{cname}_{k}.png")
                    rgba = np.concatenate([arr, np.full((h, w, 1), 200, np.uint8)], -1)
                    Image.fromarray(rgba, "RGBA").save(p)
            files.append(p)
    # Reference preprocessing, in the Rust loader's order (class folders sorted, files sorted by name).
    files.sort()
    ref = torch.stack([preprocess_pil(p, 36, 32) for p in files])  # [9,3,32,32]
    save_file({"images": ref}, os.path.join(out, "images_ref.safetensors"))

    flat = os.path.join(out, "images_flat")
    os.makedirs(flat, exist_ok=True)
    lines = []
    for i in range(4):
        arr = smooth_image(rng, 34, 40, (0.5, 0.5, 0.5))
        name = f"img_{i:03d}.png"
        Image.fromarray(arr).save(os.path.join(flat, name))
        lines.append(f"{name} {i % 2}")
    with open(os.path.join(flat, "labels.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    bad = os.path.join(out, "images_bad")
    os.makedirs(bad, exist_ok=True)
    Image.fromarray(smooth_image(rng, 32, 32, (0.3, 0.3, 0.3))).save(os.path.join(bad, "good.png"))
    with open(os.path.join(bad, "broken.jpg"), "wb") as f:
        f.write(b"this is not a JPEG file\n")
    with open(os.path.join(bad, "readme.txt"), "w") as f:
        f.write("not an image\n")


def make_stats(out: str):
    from scipy import stats

    rng = np.random.default_rng(1)
    a = np.round(rng.uniform(0, 1, 37), 1)  # many ties on purpose
    b = np.round(rng.uniform(0.2, 1, 29), 1)
    mw = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True)
    counts = [[3, 0, 1, 6], [10], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 2, 5]]
    ent = [float(stats.entropy(np.array(c, float) / sum(c), base=2)) for c in counts]
    ref = {
        "a": a.tolist(),
        "b": b.tolist(),
        "mannwhitney_u": float(mw.statistic),
        "mannwhitney_p": float(mw.pvalue),
        "counts": counts,
        "entropy_bits": ent,
        "erfc": {str(x): float(__import__("scipy.special", fromlist=["erfc"]).erfc(x)) for x in
                 [-3.0, -1.2, -0.3, 0.0, 0.1, 0.5, 1.0, 2.0, 3.5, 5.0]},
    }
    with open(os.path.join(out, "stats_ref.json"), "w") as f:
        json.dump(ref, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "units"))
    ap.add_argument("--mnist-conv", default="", help="only write the benchmark MNIST conv net to this path")
    args = ap.parse_args()
    if args.mnist_conv:
        torch.manual_seed(0)
        save_script(MnistConv(), args.mnist_conv)
        print("wrote", args.mnist_conv)
        return
    out = args.out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)

    conv = TinyConv().eval()
    save_script(conv, os.path.join(out, "tiny_conv.pt"))
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = {"x": x}
        for n in conv.layer_names():
            ref[n] = conv.layer(x, n).contiguous()
    save_file(ref, os.path.join(out, "tiny_conv_ref.safetensors"))

    rgb = TinyRgb().eval()
    save_script(rgb, os.path.join(out, "tiny_rgb.pt"))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        save_file({"x": x, "conv": rgb.layer(x, "conv").contiguous(), "fc": rgb(x).contiguous()},
                  os.path.join(out, "tiny_rgb_ref.safetensors"))

    save_script(Plain(), os.path.join(out, "plain.pt"))
    save_script(BadOutput(), os.path.join(out, "bad_output.pt"))
    make_images(out)
    make_stats(out)
    print("fixtures written to", os.path.abspath(out))


if __name__ == "__main__":
    main()
