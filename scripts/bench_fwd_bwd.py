#!/usr/bin/env python3
"""Peer for `blindspot bench fwd-bwd`: forward+backward of N100-100-10 (sigmoid, weight decay as the paper)
on the full 60,000-image MNIST training batch in plain PyTorch. Prints one JSON line with per-rep seconds."""
import argparse, gzip, json, os, time
import numpy as np
import torch

def load_mnist(d):
    with gzip.open(os.path.join(d, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(d, "train-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))

ap = argparse.ArgumentParser()
ap.add_argument("--mnist", default="assets/mnist")
ap.add_argument("--reps", type=int, default=5)
a = ap.parse_args()
torch.manual_seed(0)
x, y = load_mnist(a.mnist)
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 100), torch.nn.Sigmoid(),
                          torch.nn.Linear(100, 100), torch.nn.Sigmoid(), torch.nn.Linear(100, 10))
lams = [1e-5, 1e-5, 1e-6]
lin = [m for m in net if isinstance(m, torch.nn.Linear)]
def step():
    net.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss = loss + sum(l * (m.weight ** 2).sum() / m.out_features for l, m in zip(lams, lin))
    loss.backward()
    return loss.item()
step()  # warm-up
times = []
for _ in range(a.reps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(), "seconds": times}))
