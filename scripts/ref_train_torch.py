#!/usr/bin/env python3
"""Reference: full-batch torch.optim.LBFGS (strong Wolfe) on an MNIST sigmoid MLP with blindspot's loss
(mean cross-entropy + sum_l lambda_l * sum(W_l^2) / k_l, or --no-divide-k for lambda * sum(W^2)).
Prints train/test error every --every iterations. Used to check the zoo's training numbers against PyTorch.

usage: ref_train_torch.py [--hidden 100 100] [--iters 800] [--history 10] [--no-divide-k]"""
import argparse, gzip, json, time
import numpy as np, torch

def ld(p, off):
    with gzip.open(p) as f:
        return np.frombuffer(f.read(), np.uint8, offset=off)

ap = argparse.ArgumentParser()
ap.add_argument("--mnist", default="assets/mnist")
ap.add_argument("--hidden", type=int, nargs="*", default=[100, 100])
ap.add_argument("--lambdas", type=float, nargs="*", default=[1e-5, 1e-5, 1e-6])
ap.add_argument("--iters", type=int, default=800)
ap.add_argument("--every", type=int, default=100)
ap.add_argument("--history", type=int, default=10)
ap.add_argument("--no-divide-k", action="store_true")
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
X = torch.tensor(ld(f"{a.mnist}/train-images-idx3-ubyte.gz", 16).reshape(-1, 784) / 255.0, dtype=torch.float32)
Y = torch.tensor(ld(f"{a.mnist}/train-labels-idx1-ubyte.gz", 8).astype(np.int64))
Xt = torch.tensor(ld(f"{a.mnist}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784) / 255.0, dtype=torch.float32)
Yt = torch.tensor(ld(f"{a.mnist}/t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
torch.manual_seed(a.seed)
sizes = [784] + a.hidden + [10]
layers = [torch.nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:])]
net = torch.nn.Sequential(*sum([[l, torch.nn.Sigmoid()] for l in layers[:-1]], []), layers[-1])
opt = torch.optim.LBFGS(net.parameters(), max_iter=a.every, history_size=a.history, line_search_fn="strong_wolfe",
                        tolerance_grad=1e-5, tolerance_change=1e-12)
def closure():
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(X), Y)
    for lam, l in zip(a.lambdas, layers):
        loss = loss + lam * (l.weight ** 2).sum() / (1 if a.no_divide_k else l.out_features)
    loss.backward()
    return loss
t0 = time.time()
for k in range(a.iters // a.every):
    loss = opt.step(closure)
    with torch.no_grad():
        tr = (net(X).argmax(1) != Y).float().mean().item()
        te = (net(Xt).argmax(1) != Yt).float().mean().item()
    print(json.dumps({"iter": (k + 1) * a.every, "loss": float(loss), "train_err": tr, "test_err": te,
                      "evals": opt.state[opt._params[0]]["func_evals"], "seconds": time.time() - t0}), flush=True)
