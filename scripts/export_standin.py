#!/usr/bin/env python3
"""Exports a narrow AlexNet-*layout* network (random, seeded weights) to TorchScript: the stand-in for a
pretrained ImageNet AlexNet, to be trained on the stand-in data set (scripts/make_standin.py).

The layer sequence is torchvision's AlexNet, with configurable widths:
  features   = conv11x11/4 pad 2 -> ReLU -> maxpool 3/2 -> conv5x5 pad 2 -> ReLU -> maxpool 3/2
               -> conv3x3 pad 1 -> ReLU -> conv3x3 pad 1 -> ReLU -> conv3x3 pad 1 -> ReLU -> maxpool 3/2
  avgpool    = AdaptiveAvgPool2d((6, 6))
  classifier = Dropout -> Linear -> ReLU -> Dropout -> Linear -> ReLU -> Linear(classes)
Parameter names are torchvision's (features.0.weight, features.3.weight, ..., classifier.6.bias), so
blindspot's spectral analysis recognises the AlexNet layout without a spec. The module is wrapped by
scripts/export_torchvision.py's SequentialExport (imported, not copied), so it follows blindspot's layer
protocol exactly like an exported torchvision AlexNet: forward(x) takes [B, 3, S, S] pixels in [0, 1]
(ImageNet mean/std normalisation inside, as buffers norm.mean / norm.std), layer_names() lists
features.0 ... features.12, avgpool, classifier.0 ... classifier.6, logits; layer(x, name); input_shape().

Dropout (--dropout): the two Dropout modules are always there (same layer indices and names as torchvision's),
but their p defaults to 0: with torchvision's 0.5, training from scratch on the stand-in data stayed at chance
level for 5 epochs in the probe (scripts/probe_standin_training.py), with p = 0 it left the plateau after
~200 steps. Dropout is the identity in eval mode, so the analyses do not see p.

Initialisation (--init): `kaiming` (default): He-normal (fan_in, ReLU gain) for every conv and the two hidden
linear layers, N(0, 0.01^2) for the last layer, zero biases: the signal keeps its scale through the 8 layers,
which a from-scratch trainer without batch norm needs; `torch`: PyTorch's default init (as torchvision's
AlexNet, whose activations shrink ~2.4x per layer).

Examples:
  python scripts/export_standin.py --out runs/standin.pt        # widths 16,32,48,48,32, FC 256,256, dropout 0
  python scripts/export_standin.py --widths 32,64,96,96,64 --fc 512,512 --seed 1 --out runs/standin_w.pt
"""
import argparse
import os
import sys
from typing import List

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import Normalise, SequentialExport  # noqa: E402


class AlexNetLayout(nn.Module):
    """torchvision.models.AlexNet's module tree with chosen widths (same indices, same parameter names)."""

    def __init__(self, widths: List[int], fc: List[int], num_classes: int, dropout: float):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        f1, f2 = fc
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * 6 * 6, f1),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(f1, f2),
            nn.ReLU(inplace=True),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def init_kaiming(net: AlexNetLayout):
    linears = [m for m in net.classifier if isinstance(m, nn.Linear)]
    for m in list(net.features) + linears[:-1]:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    nn.init.normal_(linears[-1].weight, 0.0, 0.01)
    nn.init.zeros_(linears[-1].bias)


def ints(s: str, n: int, what: str) -> List[int]:
    v = [int(t) for t in s.split(",") if t.strip()]
    if len(v) != n or any(x <= 0 for x in v):
        sys.exit(f"{what} needs {n} positive comma-separated integers, got `{s}`")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output TorchScript file (.pt)")
    ap.add_argument("--widths", default="16,32,48,48,32", help="output channels of the 5 convolutions")
    ap.add_argument("--fc", default="256,256", help="widths of the 2 hidden linear layers")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="p of both Dropout layers (torchvision: 0.5; default 0, see above)")
    ap.add_argument("--size", type=int, default=224, help="input size S of [3, S, S] (input_shape())")
    ap.add_argument("--init", choices=["kaiming", "torch"], default="kaiming")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    net = AlexNetLayout(ints(args.widths, 5, "--widths"), ints(args.fc, 2, "--fc"), args.classes, args.dropout)
    if args.init == "kaiming":
        init_kaiming(net)
    net.eval()

    wrapped = SequentialExport(net, args.size).eval()
    scripted = torch.jit.script(wrapped)
    x = torch.rand(2, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net(Normalise()(x))
        got = scripted(x)
        names = scripted.layer_names()
        shapes = {n: list(scripted.layer(x, n).shape) for n in names}
    err = (want - got).abs().max().item()
    if err > 1e-4 * (1 + want.abs().max().item()):
        sys.exit(f"scripted model differs from the eager one by {err}")
    params = sorted(n for n, _ in scripted.named_parameters())
    want_params = sorted(f"{p}.{k}" for p in ("features.0", "features.3", "features.6", "features.8",
                                              "features.10", "classifier.1", "classifier.4", "classifier.6")
                         for k in ("weight", "bias"))
    if params != want_params:
        sys.exit(f"parameter names {params} are not torchvision's AlexNet layout")
    scripted.save(args.out)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"wrote {args.out}: AlexNet layout, widths {args.widths}, FC {args.fc}, {args.classes} classes, "
          f"{n_params} parameters, init {args.init}, seed {args.seed}, input [3, {args.size}, {args.size}] in [0, 1]")
    print("layers: " + ", ".join(f"{n} {shapes[n][1:]}" for n in names))


if __name__ == "__main__":
    main()
