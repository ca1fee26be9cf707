#!/usr/bin/env python3
"""foolbox 2.4's LBFGSAttack and blindspot.attack side by side, from one Python script: the same model
(a zoo folder loaded with blindspot.load_model: a scripted torch module both libraries take), the same
first N MNIST test images and targets ((label + 1) mod 10). Prints success rate, mean distortion
(sqrt(mean((x' - x)^2)) of successes), forward/backward evaluations per image and time of each.

usage: .venv/bin/python scripts/python_foolbox.py MODEL_DIR [--n 20]
needs: pip install foolbox==2.4.0 (not a dependency of blindspot; it installs from PyPI)
"""
import argparse, collections, collections.abc, gzip, sys, time
from pathlib import Path

import numpy as np
import torch

import blindspot

collections.Mapping = collections.abc.Mapping  # foolbox 2.4.0 on Python >= 3.10
collections.Iterable = collections.abc.Iterable
collections.Sequence = collections.abc.Sequence
ROOT = Path(__file__).resolve().parents[1]


def mnist_test(n):
    d = ROOT / "assets/mnist"
    with gzip.open(d / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(d / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    return torch.from_numpy(x.copy()).float().div(255.0), torch.from_numpy(y.astype(np.int64))


class Counting(torch.nn.Module):
    """Counts the rows foolbox evaluates (forward passes with gradients included)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.net(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--n", type=int, default=20)
    a = ap.parse_args()
    try:
        import foolbox
        from foolbox.criteria import TargetClass
        from foolbox.v1.attacks import LBFGSAttack
    except ImportError:
        sys.exit("foolbox is not installed: pip install foolbox==2.4.0")
    torch.set_num_threads(1)
    model = blindspot.load_model(a.model)  # a scripted torch.nn.Module
    x, y = mnist_test(a.n)
    tg = (y + 1) % 10

    t0 = time.perf_counter()
    r = blindspot.attack(model, x, y, tg)
    ours = (time.perf_counter() - t0, r.success_rate, r.mean_distortion, float(r.evaluations.double().mean()))

    net = Counting(model).eval()
    fmodel = foolbox.models.PyTorchModel(net, bounds=(0, 1), num_classes=10)
    ok, dist, t0 = [], [], time.perf_counter()
    for i in range(a.n):
        adv = LBFGSAttack(fmodel, criterion=TargetClass(int(tg[i])))(x[i].numpy(), int(y[i]))
        s = adv is not None and int(np.argmax(fmodel.forward_one(adv))) == int(tg[i])
        ok.append(s)
        if s:
            dist.append(float(np.sqrt(np.mean((adv - x[i].numpy()) ** 2))))
    theirs = (time.perf_counter() - t0, float(np.mean(ok)), float(np.mean(dist)) if dist else float("nan"), net.rows / a.n)

    print(f"{a.n} MNIST test images, targets (label + 1) mod 10, model {a.model}, 1 thread")
    print(f"{'':28} {'success':>8} {'distortion':>11} {'evals/image':>12} {'seconds':>8}")
    for name, (sec, sr, md, ev) in [("blindspot.attack (one call)", ours), (f"foolbox {foolbox.__version__} LBFGSAttack", theirs)]:
        print(f"{name:28} {sr:8.2%} {md:11.4f} {ev:12.0f} {sec:8.2f}")


if __name__ == "__main__":
    main()
