#!/usr/bin/env python3
"""Peer benchmark for the paper's attack (§4.1): foolbox 2.4.0 `foolbox.v1.attacks.LBFGSAttack`
(per-example scipy L-BFGS-B, c search) on the same zoo model and the same targeted test images as
`blindspot attack`. Benchmark only: foolbox is not part of scripts/setup.sh; install it with
`pip install foolbox==2.4.0` into the virtualenv.

usage: ref_attack_foolbox.py --model <zoo model dir> --ours <attack.csv of our run> --n 30 --out res.json
Reads the targets from our CSV (same images: test split, indices in the CSV), attacks the first n,
reports success, distortion sqrt(mean((x'-x)^2)) per image, evaluations and images/s.
"""
import argparse, collections, collections.abc, csv, gzip, json, os, sys, time

collections.Mapping = collections.abc.Mapping  # foolbox 2.4.0 on Python >= 3.10
collections.Iterable = collections.abc.Iterable  # (and these two, used by foolbox.v1)
collections.Sequence = collections.abc.Sequence
import numpy as np
import torch
from safetensors.torch import load_file

torch.set_num_threads(1)


def load_mnist_test(d):
    with gzip.open(os.path.join(d, "t10k-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    with gzip.open(os.path.join(d, "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return x, y


class Counting(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.net(x)


def build(model_dir):
    meta = json.load(open(os.path.join(model_dir, "model.json")))
    w = load_file(os.path.join(model_dir, "weights.safetensors"))
    layers = []
    for l in meta["architecture"]["layers"]:
        k = l["kind"]
        if k == "flatten":
            layers.append(torch.nn.Flatten())
        elif k == "linear":
            lin = torch.nn.Linear(l["in_features"], l["out_features"])
            lin.weight.data = w[l["name"] + ".weight"].float()
            lin.bias.data = w[l["name"] + ".bias"].float()
            layers.append(lin)
        elif k == "sigmoid":
            layers.append(torch.nn.Sigmoid())
        elif k == "relu":
            layers.append(torch.nn.ReLU())
        else:
            sys.exit(f"layer kind {k} not supported by this script")
    return torch.nn.Sequential(*layers).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--mnist", default="assets/mnist")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import foolbox
    from foolbox.v1.attacks import LBFGSAttack
    from foolbox.criteria import TargetClass

    rows = list(csv.DictReader(open(a.ours)))[: a.n]
    x, y = load_mnist_test(a.mnist)
    net = Counting(build(a.model)).eval()
    fmodel = foolbox.models.PyTorchModel(net, bounds=(0, 1), num_classes=10)
    out = []
    t0 = time.time()
    for r in rows:
        i, t = int(r["index"]), int(r["target"])
        assert int(r["label"]) == int(y[i])
        net.rows = 0
        t1 = time.time()
        att = LBFGSAttack(fmodel, criterion=TargetClass(t))
        adv = att(x[i], int(y[i]))
        sec = time.time() - t1
        ok = adv is not None and int(np.argmax(fmodel.forward_one(adv))) == t
        d = float(np.sqrt(np.mean((adv - x[i]) ** 2))) if ok else None
        out.append({"index": i, "label": int(y[i]), "target": t, "success": ok, "distortion": d,
                    "evaluations": net.rows, "seconds": sec})
        print(out[-1], flush=True)
    total = time.time() - t0
    succ = [o for o in out if o["success"]]
    res = {"foolbox": foolbox.__version__, "images": len(out), "success_rate": len(succ) / len(out),
           "mean_distortion": float(np.mean([o["distortion"] for o in succ])) if succ else None,
           "evaluations_per_image": float(np.mean([o["evaluations"] for o in out])),
           "images_per_second": len(out) / total, "seconds": total, "per_image": out}
    json.dump(res, open(a.out, "w"), indent=1)
    print({k: v for k, v in res.items() if k != "per_image"})


if __name__ == "__main__":
    main()
