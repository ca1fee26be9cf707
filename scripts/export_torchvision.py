#!/usr/bin/env python3
"""Exports a torchvision classifier (AlexNet by default) to TorchScript for blindspot.

The exported model follows blindspot's layer protocol (see src/models/torchscript.rs, docs/units.md):
  forward(x)             x: [B, 3, S, S] images in pixel space [0, 1] -> logits [B, classes];
                         the ImageNet normalisation (mean/std) is applied INSIDE the model.
  layer_names()          List[str], input side first;
  layer(x, name)         the activations of layer `name` (same [0, 1] input as forward);
  input_shape()          [3, S, S].

Layer names:
  * models made of `features` / `avgpool` / `classifier` Sequentials (AlexNet, VGG): every sub-module,
    named as in the state dict: `features.0` ... `features.12`, `avgpool`, `classifier.0` ... `classifier.6`
    (AlexNet: conv1 = features.0, its ReLU = features.1, pool = features.2, ..., FC layers classifier.1/.4/.6).
    `layer` runs the network only up to the requested layer.
  * any other torchvision model (ResNet, ...): the outputs of its top-level children by default, or the
    fx node names / module prefixes given with --layers, via torchvision's create_feature_extractor
    (`layer` then runs the whole graph).

Weights: random (seeded, --seed), or a state-dict file (--weights, e.g. torchvision's alexnet-owt-7be5be79.pth
downloaded by the user); nothing is downloaded by this script.

Examples:
  python scripts/export_torchvision.py --out /tmp/alexnet.pt                        # random weights
  python scripts/export_torchvision.py --weights alexnet-owt-7be5be79.pth --out alexnet.pt
  python scripts/export_torchvision.py --arch resnet18 --layers layer1,layer2,layer3,layer4 --out r18.pt
"""
import argparse
import sys
from typing import List

import torch
import torch.nn as nn
import torchvision

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class Normalise(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class SequentialExport(nn.Module):
    """features -> avgpool -> flatten -> classifier, each sub-module reachable by name."""

    def __init__(self, net: nn.Module, size: int):
        super().__init__()
        self.norm = Normalise()
        self.features = net.features
        self.avgpool = net.avgpool
        self.classifier = net.classifier
        self.feature_names: List[str] = [f"features.{i}" for i in range(len(net.features))]
        self.classifier_names: List[str] = [f"classifier.{i}" for i in range(len(net.classifier))]
        self.size = size

    def forward(self, x):
        return self.layer(x, "logits")

    @torch.jit.export
    def layer_names(self) -> List[str]:
        return self.feature_names + ["avgpool"] + self.classifier_names + ["logits"]

    @torch.jit.export
    def input_shape(self) -> List[int]:
        return [3, self.size, self.size]

    @torch.jit.export
    def layer(self, x: torch.Tensor, name: str) -> torch.Tensor:
        h = self.norm(x)
        i = 0
        for m in self.features:
            h = m(h)
            if self.feature_names[i] == name:
                return h
            i += 1
        h = self.avgpool(h)
        if name == "avgpool":
            return h
        h = torch.flatten(h, 1)
        i = 0
        for m in self.classifier:
            h = m(h)
            if self.classifier_names[i] == name:
                return h
            i += 1
        if name == "logits":
            return h
        raise RuntimeError("unknown layer " + name)


class GraphExport(nn.Module):
    """Any torchvision model: the named nodes come from an fx feature extractor."""

    def __init__(self, net: nn.Module, nodes: List[str], size: int):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.norm = Normalise()
        self.net = net
        self.extractor = create_feature_extractor(net, return_nodes={n: n for n in nodes})
        self.names: List[str] = list(nodes)
        self.size = size

    def forward(self, x):
        return self.net(self.norm(x))

    @torch.jit.export
    def layer_names(self) -> List[str]:
        return self.names + ["logits"]

    @torch.jit.export
    def input_shape(self) -> List[int]:
        return [3, self.size, self.size]

    @torch.jit.export
    def layer(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if name == "logits":
            return self.forward(x)
        outs = self.extractor(self.norm(x))
        if name in outs:
            return outs[name]
        raise RuntimeError("unknown layer " + name)


def build(arch: str, weights: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    try:
        net = torchvision.models.get_model(arch, weights=None)
    except Exception as e:  # unknown name
        sys.exit(f"unknown torchvision model `{arch}`: {e}")
    if weights:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        missing, unexpected = net.load_state_dict(sd, strict=False)
        if missing or unexpected:
            sys.exit(f"{weights} does not fit {arch}: missing {missing[:5]}..., unexpected {unexpected[:5]}...")
    return net.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="alexnet", help="torchvision model name (alexnet, vgg16, resnet18, ...)")
    ap.add_argument("--weights", default="", help="state-dict file (.pth); default: random weights")
    ap.add_argument("--out", required=True, help="output TorchScript file (.pt)")
    ap.add_argument("--size", type=int, default=224, help="input size S of [3, S, S]")
    ap.add_argument("--layers", default="", help="comma-separated node names / prefixes (non-Sequential models)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    net = build(args.arch, args.weights, args.seed)
    sequential = all(hasattr(net, a) for a in ("features", "avgpool", "classifier")) and isinstance(
        net.features, nn.Sequential) and isinstance(net.classifier, nn.Sequential) and not args.layers
    x = torch.rand(2, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net(Normalise()(x))

    def export(wrapped):
        """Scripts `wrapped` and checks it against the eager model on a random [0, 1] batch."""
        scripted = torch.jit.script(wrapped.eval())
        with torch.no_grad():
            got = scripted(x)
            names = scripted.layer_names()
            for n in names:
                scripted.layer(x, n)
        err = (want - got).abs().max().item()
        if err > 1e-4 * (1 + want.abs().max().item()):
            raise RuntimeError(f"scripted model differs from the eager one by {err}")
        return scripted, got, names

    nodes = [n for n in args.layers.split(",") if n] or [n for n, _ in net.named_children()]
    try:
        if not sequential:
            raise RuntimeError("not a features/avgpool/classifier model")
        scripted, got, names = export(SequentialExport(net, args.size))
    except Exception as e:  # e.g. ConvNeXt: its classifier does not start from a flat vector
        if sequential:
            print(f"sequential export failed ({str(e).splitlines()[0]}); using the fx feature extractor")
        try:
            scripted, got, names = export(GraphExport(net, nodes, args.size))
        except Exception as e2:
            sys.exit(f"cannot export {args.arch}: {e2}")
    scripted.save(args.out)
    print(f"wrote {args.out}: {args.arch}, input [3, {args.size}, {args.size}] in [0, 1], "
          f"{got.shape[1]} classes, {len(names)} layers: {', '.join(names)}")


if __name__ == "__main__":
    main()
