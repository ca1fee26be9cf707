#!/usr/bin/env python3
"""PyTorch peer of `blindspot spectral --mode circular` on AlexNet (issue 15, item 2): the same fast bounds,
written as plain PyTorch on the same device, for a timing comparison (`scripts/gpu_validate.sh`).

Per stride-1 conv layer at its input size n (AlexNet 224: features.3 at 27, features.6/8/10 at 13): the
circular-padding operator's singular values are those of the [out, in] matrices of the kernel's 2-D FFT at
each of the n² frequencies, found as eigenvalues of the smaller Gram matrix in f64 (as blindspot does); per
linear layer: the eigenvalues of the smaller Gram matrix of its weight, in f64. conv1 (stride 4) is left out:
compare with the sum of blindspot's per-layer times (bounds.json `analysis.timings`) over the same layers.

usage: peer_spectral_torch.py --model alexnet.pt [--size 224] [--device cuda] [--out res.json]
"""
import argparse, json, time

import torch


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def gram_extremes(a):
    """(largest, smallest) singular value of each matrix of a [..., p, q] (f64) via the smaller Gram."""
    g = a @ a.mH if a.shape[-2] <= a.shape[-1] else a.mH @ a
    ev = torch.linalg.eigvalsh(g).clamp_min(0).sqrt()
    return ev[..., -1].max().item(), ev[..., 0].min().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    dev = torch.device(a.device)
    m = torch.jit.load(a.model, map_location=dev)
    convs = [(k, p) for k, p in m.named_parameters() if p.dim() == 4]
    fcs = [(k, p) for k, p in m.named_parameters() if p.dim() == 2]
    s = a.size
    n1 = (s + 2 * 2 - 11) // 4 + 1  # conv1: 11×11, stride 4, padding 2
    n2 = (n1 - 3) // 2 + 1  # max pool 3/2
    n3 = (n2 - 3) // 2 + 1
    sizes = [None, n2, n3, n3, n3]  # input sizes of features.0/3/6/8/10 (None: stride 4, skipped)
    rows, times = [], {}
    sync(dev)
    t_all = time.perf_counter()
    for (name, w), n in zip(convs, sizes):
        if n is None:
            continue
        t0 = time.perf_counter()
        f = torch.fft.fft2(w.detach().double(), s=(n, n))  # [out, in, n, n]
        hi, lo = gram_extremes(f.permute(2, 3, 0, 1).reshape(n * n, w.shape[0], w.shape[1]))
        sync(dev)
        times[name] = time.perf_counter() - t0
        rows.append({"layer": name, "input": n, "upper": hi, "lower": lo})
    for name, w in fcs:
        t0 = time.perf_counter()
        hi, lo = gram_extremes(w.detach().double())
        sync(dev)
        times[name] = time.perf_counter() - t0
        rows.append({"layer": name, "upper": hi, "lower": lo})
    res = {"peer": "peer_spectral_torch.py", "device": str(dev), "torch": torch.__version__,
           "seconds": time.perf_counter() - t_all, "timings": times, "rows": rows}
    print(json.dumps(res))
    if a.out:
        json.dump(res, open(a.out, "w"), indent=2)


if __name__ == "__main__":
    main()
