#!/usr/bin/env python3
"""Loads a blindspot model folder (model.json + weights.safetensors) into a plain torch.nn.Sequential and
prints its MNIST test error: the reference for the model format documented in README ("Model format").

usage: load_in_pytorch.py MODEL_DIR [--mnist assets/mnist] [--json]
"""
import argparse, gzip, json, os
import numpy as np
import torch
from safetensors.torch import load_file


def build(arch):
    """model.json's `architecture` -> nn.Sequential whose parameter names match weights.safetensors."""
    mods = torch.nn.Module()
    seq = []
    for i, l in enumerate(arch["layers"]):
        k = l["kind"]
        if k == "linear":
            m = torch.nn.Linear(l["in_features"], l["out_features"])
            seq.append((l["name"], torch.nn.Sequential(torch.nn.Flatten(), m)))
        elif k == "conv2d":
            m = torch.nn.Conv2d(l["in_channels"], l["out_channels"], l["kernel_size"], l.get("stride", 1), l.get("padding", 0))
            seq.append((l["name"], m))
        elif k == "sigmoid":
            seq.append((f"act{i}", torch.nn.Sigmoid()))
        elif k == "relu":
            seq.append((f"act{i}", torch.nn.ReLU()))
        elif k == "max_pool2d":
            seq.append((f"pool{i}", torch.nn.MaxPool2d(l["kernel_size"], l["stride"])))
        elif k == "flatten":
            seq.append((f"flat{i}", torch.nn.Flatten()))
        elif k == "dropout":
            seq.append((f"drop{i}", torch.nn.Dropout(l["p"])))
        else:
            raise ValueError(f"unknown layer kind {k}")
    return seq


class Net(torch.nn.Module):
    def __init__(self, arch):
        super().__init__()
        self.order = []
        for name, m in build(arch):
            # a Linear is wrapped with a Flatten; register the Linear itself under the layer's name
            if isinstance(m, torch.nn.Sequential):
                self.add_module(name, m[1])
                self.order.append((name, True))
            else:
                self.add_module(name, m)
                self.order.append((name, False))

    def forward(self, x):
        for name, flatten in self.order:
            if flatten:
                x = x.flatten(1)
            x = getattr(self, name)(x)
        return x


def load(model_dir):
    meta = json.load(open(os.path.join(model_dir, "model.json")))
    net = Net(meta["architecture"])
    net.load_state_dict(load_file(os.path.join(model_dir, "weights.safetensors")), strict=True)
    return net.eval(), meta


def mnist_test(d):
    with gzip.open(os.path.join(d, "t10k-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(d, "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--mnist", default="assets/mnist")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    net, meta = load(a.model_dir)
    x, y = mnist_test(a.mnist)
    with torch.no_grad():
        err = (net(x).argmax(1) != y).float().mean().item()
    if a.json:
        print(json.dumps({"name": meta["name"], "test_error": err}))
    else:
        print(f"{meta['name']}: PyTorch test error {100 * err:.4f}% (blindspot recorded {100 * meta['errors']['test']:.4f}%)")
