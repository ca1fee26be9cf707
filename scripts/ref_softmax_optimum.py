#!/usr/bin/env python3
"""Reference: the exact minimiser (float64, scipy L-BFGS-B to a tiny gradient) of the paper's linear softmax
on MNIST pixels, loss = mean cross-entropy + lambda * m * sum(W^2), biases not decayed.

The loss is strictly convex in W and convex in b, so its minimiser's train/test error is a property of the
loss, not of the optimiser. m = 1/k = 1/10 is the paper's lambda*sum(W^2)/k with k = 10 output units (what
blindspot trains); m = 1 is the same without /k. Other m show which effective decay the paper's numbers
correspond to. Used in the README to explain softmax3's miss of its error target.

usage: ref_softmax_optimum.py [--lambdas 1e-4 1e-2 1] [--mult 0.1 1]"""
import argparse, gzip, json, time
import numpy as np
from scipy.optimize import minimize


def ld(p, off):
    with gzip.open(p) as f:
        return np.frombuffer(f.read(), np.uint8, offset=off)


ap = argparse.ArgumentParser()
ap.add_argument("--mnist", default="assets/mnist")
ap.add_argument("--lambdas", type=float, nargs="*", default=[1e-4, 1e-2, 1.0])
ap.add_argument("--mult", type=float, nargs="*", default=[0.1, 1.0])
ap.add_argument("--gtol", type=float, default=1e-9)
ap.add_argument("--maxiter", type=int, default=20000)
a = ap.parse_args()
X = ld(f"{a.mnist}/train-images-idx3-ubyte.gz", 16).reshape(-1, 784) / 255.0
Y = ld(f"{a.mnist}/train-labels-idx1-ubyte.gz", 8).astype(np.int64)
Xt = ld(f"{a.mnist}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784) / 255.0
Yt = ld(f"{a.mnist}/t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
N = X.shape[0]
onehot = np.eye(10)[Y]


def fg(theta, lam):
    W = theta[: 784 * 10].reshape(10, 784)
    b = theta[784 * 10 :]
    z = X @ W.T + b  # [N, 10]
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    s = p.sum(1, keepdims=True)
    logp = z - np.log(s)
    f = -(logp * onehot).sum() / N + lam * (W**2).sum()
    d = (p / s - onehot) / N  # [N, 10]
    gW = d.T @ X + 2 * lam * W
    gb = d.sum(0)
    return f, np.concatenate([gW.ravel(), gb])


def err(theta, A, y):
    W = theta[: 784 * 10].reshape(10, 784)
    b = theta[784 * 10 :]
    return float(((A @ W.T + b).argmax(1) != y).mean())


for lam in a.lambdas:
    for m in a.mult:
        t0 = time.time()
        r = minimize(fg, np.zeros(7850), args=(lam * m,), jac=True, method="L-BFGS-B",
                     options={"maxiter": a.maxiter, "gtol": a.gtol, "ftol": 0.0, "maxcor": 20})
        print(json.dumps({"lambda": lam, "mult": m, "effective": lam * m, "loss": float(r.fun),
                          "grad_inf": float(np.abs(r.jac).max()), "iters": int(r.nit),
                          "train_err": err(r.x, X, Y), "test_err": err(r.x, Xt, Yt),
                          "seconds": round(time.time() - t0, 1), "message": str(r.message)}), flush=True)
