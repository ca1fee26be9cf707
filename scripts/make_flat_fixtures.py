#!/usr/bin/env python3
"""Generates the flat-logit fixtures of tests/attack_flat.rs (issue 13, item 6).

A random-weight torchvision AlexNet has near-uniform logits (spread ~0.05 over 1000 classes): the
cross-entropy sits at ~log(1000) = 6.9 and the attack's objective ‖r‖² + c·loss carries that constant,
so the solver's relative-reduction test (and f32 rounding) sees nothing move although one sign-gradient
step of 1/255 flips the label. These fixtures reproduce that at a size the test suite can run on 2 cores:

  flat_alexnet.pt   torchvision's AlexNet layout (features / avgpool / classifier, same kernels, strides,
                    pooling, dropout, 224×224 input, 1000 classes, ImageNet normalisation inside) with
                    conv widths /16 (4, 12, 24, 16, 16) and FC widths 32, the last layer's
                    weights and bias ×0.1 so the logits spread ~0.05 like the full random AlexNet's; PyTorch's default random init,
                    seed 0; blindspot's layer protocol (layer_names(), input_shape(), layer(x, name)).
  images/img_XX.png 16 seeded 224×224 RGB images (smooth random colour fields plus blocky noise).
  flat_ref.json     PyTorch's reference per image: logits spread, predicted label, and whether one
                    sign-gradient step of 1/255 on the cross-entropy of the label (untargeted) flips it.

Run: /work/wt-i13-robust/.venv/bin/python scripts/make_flat_fixtures.py [--out tests/fixtures/flat]
     ... --full /tmp/alexnet.pt   (also: full-width random AlexNet + its reference, not committed)
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import SequentialExport  # noqa: E402


def small_alexnet() -> nn.Module:
    torch.manual_seed(0)
    c = [4, 12, 24, 16, 16]
    net = nn.Module()
    net.features = nn.Sequential(
        nn.Conv2d(3, c[0], 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    net.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    net.classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(c[4] * 36, 32), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(32, 32), nn.ReLU(inplace=True), nn.Linear(32, 1000))
    with torch.no_grad():  # the full random AlexNet's logit spread (~0.05), not the narrow net's (~0.5)
        net.classifier[6].weight.mul_(0.1)
        net.classifier[6].bias.mul_(0.1)
    return net.eval()


def images(n: int) -> torch.Tensor:
    """[n, 3, 224, 224] in [0, 1], on the 1/255 grid: upsampled 7×7 colour fields plus 8×8-pixel blocks of noise (small PNGs)."""
    g = torch.Generator().manual_seed(13)
    low = torch.rand(n, 3, 7, 7, generator=g)
    x = torch.nn.functional.interpolate(low, size=224, mode="bilinear", align_corners=False)
    noise = torch.nn.functional.interpolate(torch.randn(n, 3, 28, 28, generator=g), size=224, mode="nearest")
    x = (x + 0.05 * noise).clamp(0, 1)
    return (x * 255).round() / 255


def reference(model, x: torch.Tensor) -> list:
    rows = []
    for i in range(x.shape[0]):
        xi = x[i:i + 1].clone().requires_grad_(True)
        z = model(xi)
        label = int(z.argmax())
        loss = torch.nn.functional.cross_entropy(z, torch.tensor([label]))
        (g,) = torch.autograd.grad(loss, xi)
        with torch.no_grad():
            step = (xi + g.sign() / 255).clamp(0, 1)
            z2 = model(step)
        rows.append({"image": f"img_{i:02}.png", "label": label,
                     "spread": float((z.max() - z.min()).detach()),
                     "step_prediction": int(z2.argmax()),
                     "step_flips": int(z2.argmax()) != label})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/flat")
    ap.add_argument("--full", default="", help="also write a full-width random AlexNet here (not committed)")
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
    x = images(16)
    for i in range(x.shape[0]):
        arr = (x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(os.path.join(a.out, "images", f"img_{i:02}.png"))
    scripted = torch.jit.script(SequentialExport(small_alexnet(), 224).eval())
    scripted.save(os.path.join(a.out, "flat_alexnet.pt"))
    ref = reference(scripted, x)
    with open(os.path.join(a.out, "flat_ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(f"small: {sum(r['step_flips'] for r in ref)}/16 flipped by one step; "
          f"spread {min(r['spread'] for r in ref):.3g}..{max(r['spread'] for r in ref):.3g}")
    if a.full:
        import torchvision
        torch.manual_seed(0)
        full = torch.jit.script(SequentialExport(torchvision.models.alexnet(weights=None).eval(), 224).eval())
        full.save(a.full)
        fref = reference(full, x)
        with open(a.full + ".ref.json", "w") as f:
            json.dump(fref, f, indent=1)
        print(f"full: {sum(r['step_flips'] for r in fref)}/16 flipped by one step; "
              f"spread {min(r['spread'] for r in fref):.3g}..{max(r['spread'] for r in fref):.3g}")


if __name__ == "__main__":
    main()
