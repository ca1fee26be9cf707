#!/usr/bin/env python3
"""Reference minimisers for the batched L-BFGS-B engine (src/optim), made with scipy's L-BFGS-B.

Writes tests/fixtures/optim/<family>.safetensors (problem data, x0, bounds, scipy's x*, f*, active masks)
and tests/fixtures/optim/ref.json (scipy's iterations, evaluations and messages, for reading).

Families (each a batch of problems with different data):
  quad      B=8, n=20: 0.5 x'Ax + b'x, per-problem boxes, many active bounds; condition numbers from 1 to
            1e4 so that problems converge at very different iterations; problem scales from 1e-2 to 1e3.
  rosen{2,5,10}  B=6: bounded Rosenbrock, per-problem boxes (often excluding the unconstrained minimum).
  rosen_scalar   B=4, n=4: Rosenbrock with one scalar box [-1.5, 0.8] shared by all problems.
  logreg    B=4: multinomial logistic regression, 200 samples x 20 features x 5 classes, params
            [W (20x5, row-major), b (5)] = 105, mean cross-entropy + lam*|W|^2, W in [-0.15, 0.15], b free.
  unbounded B=1 problems: quadratic n=50 (cond 1e3), Rosenbrock n=10, logistic regression (lam=1e-3).

Every bounded family is checked for strict complementarity at scipy's solution (|g_i| > 1e-5 on active
coordinates, distance > 1e-5 to the bounds on free ones) so that "same active set" is well defined.
Run: /work/main/.venv/bin/python scripts/ref_lbfgsb.py
"""
import json
import os

import numpy as np
from scipy.optimize import fmin_l_bfgs_b
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "optim")
TIGHT = dict(m=10, factr=10.0, pgtol=1e-12, maxiter=100000, maxfun=100000)


def quad_fg(A, b):
    return lambda x: (0.5 * x @ A @ x + b @ x, A @ x + b)


def rosen_fg(x):
    f = np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] += -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return f, g


def logreg_fg(X, y, lam, d, k):
    N = X.shape[0]
    Y = np.eye(k)[y]

    def fg(p):
        W = p[: d * k].reshape(d, k)
        bb = p[d * k:]
        z = X @ W + bb
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
        logp = z - lse
        f = -(Y * logp).sum() / N + lam * (W ** 2).sum()
        P = np.exp(logp)
        dz = (P - Y) / N
        gW = X.T @ dz + 2 * lam * W
        gb = dz.sum(axis=0)
        return f, np.concatenate([gW.ravel(), gb])

    return fg


def solve(fg, x0, lo, hi):
    bounds = None if lo is None else list(zip(lo, hi))
    x, f, info = fmin_l_bfgs_b(fg, x0, bounds=bounds, **TIGHT)
    return x, f, info


def active_masks(fg, x, lo, hi, check=True):
    _, g = fg(x)
    at_lo = x <= lo
    at_hi = x >= hi
    if check:
        act = at_lo | at_hi
        gap = np.minimum(np.abs(x - lo), np.abs(hi - x))
        ok_act = np.all(np.abs(g[act]) > 1e-5)
        ok_free = np.all(gap[~act] > 1e-5) and np.all(np.abs(g[~act]) < 1e-6)
        if not (ok_act and ok_free):
            return None
    return at_lo, at_hi


def batch(name, problems, extra, meta):
    """problems: list of dicts with fg, x0, lo, hi (arrays or None)."""
    xs, fs, los, his, infos = [], [], [], [], []
    for p in problems:
        x, f, info = solve(p["fg"], p["x0"], p["lo"], p["hi"])
        xs.append(x)
        fs.append(f)
        infos.append(dict(f=float(f), nit=int(info["nit"]), nfev=int(info["funcalls"]),
                          warnflag=int(info["warnflag"]), task=str(info["task"])))
        if p["lo"] is not None:
            m = active_masks(p["fg"], x, p["lo"], p["hi"])
            if m is None:
                raise SystemExit(f"{name}: degenerate active set, change the seed")
            los.append(m[0])
            his.append(m[1])
    t = dict(extra)
    t["x0"] = np.stack([p["x0"] for p in problems])
    t["x_ref"] = np.stack(xs)
    t["f_ref"] = np.array(fs)
    if los:
        t["at_lower"] = np.stack(los).astype(np.uint8)
        t["at_upper"] = np.stack(his).astype(np.uint8)
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, os.path.join(OUT, name + ".safetensors"))
    meta[name] = infos
    nact = [int(a.sum() + b.sum()) for a, b in zip(los, his)]
    print(name, [i["nit"] for i in infos], [round(i["f"], 6) for i in infos], "active:", nact)


def torch_lbfgs(fg, x0):
    """torch.optim.LBFGS(line_search_fn="strong_wolfe"), f64, run to convergence: (final f, evaluations)."""
    import torch

    p = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([p], lr=1, max_iter=100000, max_eval=100000, tolerance_grad=1e-9,
                            tolerance_change=1e-15, history_size=10, line_search_fn="strong_wolfe")
    evals = [0]

    def closure():
        opt.zero_grad()
        f, g = fg(p.detach().numpy())
        p.grad = torch.tensor(g)
        evals[0] += 1
        return torch.tensor(f)

    opt.step(closure)
    f, _ = fg(p.detach().numpy())
    return float(f), evals[0]


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"scipy_settings": TIGHT}
    rng = np.random.default_rng(20140101)

    # Quadratics: A = U diag(lam) U' scaled, b large enough for many active bounds.
    B, n = 8, 20
    As, bs, lo, hi, probs = [], [], [], [], []
    conds = [1, 1, 10, 1e2, 1e3, 1e4, 1e4, 3e3]
    scales = [1.0, 1e-2, 1.0, 1e3, 1.0, 1.0, 10.0, 1.0]
    for i in range(B):
        U, _ = np.linalg.qr(rng.standard_normal((n, n)))
        lam = np.logspace(0, -np.log10(conds[i]), n)
        A = scales[i] * (U * lam) @ U.T
        A = 0.5 * (A + A.T)
        b = scales[i] * rng.standard_normal(n) * 0.4
        l = -rng.uniform(0.3, 1.0, n)
        u = rng.uniform(0.3, 1.0, n)
        As.append(A), bs.append(b), lo.append(l), hi.append(u)
        probs.append(dict(fg=quad_fg(A, b), x0=np.zeros(n), lo=l, hi=u))
    batch("quad", probs, dict(A=np.stack(As), b=np.stack(bs), lower=np.stack(lo), upper=np.stack(hi)), meta)

    # Bounded Rosenbrock.
    for n in (2, 5, 10):
        B = 6
        lo = -rng.uniform(0.5, 2.0, (B, n))
        hi = rng.uniform(0.4, 2.0, (B, n))
        x0 = lo + (hi - lo) * rng.uniform(0.2, 0.8, (B, n))
        probs = [dict(fg=rosen_fg, x0=x0[i], lo=lo[i], hi=hi[i]) for i in range(B)]
        batch(f"rosen{n}", probs, dict(lower=lo, upper=hi), meta)

    B, n = 4, 4
    x0 = rng.uniform(-1.4, 0.7, (B, n))
    l, u = np.full(n, -1.5), np.full(n, 0.8)
    probs = [dict(fg=rosen_fg, x0=x0[i], lo=l, hi=u) for i in range(B)]
    batch("rosen_scalar", probs, {}, meta)

    # Multinomial logistic regression.
    B, N, d, k, lam = 4, 200, 20, 5, 1e-3
    Xs, ys, probs = [], [], []
    wlim = 0.15
    lo = np.concatenate([np.full(d * k, -wlim), np.full(k, -np.inf)])
    hi = np.concatenate([np.full(d * k, wlim), np.full(k, np.inf)])
    for i in range(B):
        X = rng.standard_normal((N, d)).astype(np.float32).astype(np.float64)
        Wt = rng.standard_normal((d, k))
        y = np.argmax(X @ Wt + 0.5 * rng.standard_normal((N, k)), axis=1)
        Xs.append(X), ys.append(y)
        probs.append(dict(fg=logreg_fg(X, y, lam, d, k), x0=np.zeros(d * k + k), lo=lo, hi=hi))
    batch("logreg", probs, dict(X=np.stack(Xs).astype(np.float32), y=np.stack(ys).astype(np.int64),
                                lower=lo, upper=hi, lam=np.array([lam])), meta)

    # Unbounded, B = 1 (the training path).
    n = 50
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (U * np.logspace(0, -3, n)) @ U.T
    A = 0.5 * (A + A.T)
    b = rng.standard_normal(n)
    batch("unbounded_quad", [dict(fg=quad_fg(A, b), x0=np.zeros(n), lo=None, hi=None)],
          dict(A=A[None], b=b[None]), meta)
    x0 = np.tile([-1.2, 1.0], 5)
    batch("unbounded_rosen", [dict(fg=rosen_fg, x0=x0, lo=None, hi=None)], {}, meta)
    X, y = Xs[0], ys[0]
    tf, te = torch_lbfgs(logreg_fg(X, y, lam, d, k), np.zeros(d * k + k))
    meta["torch_lbfgs_unbounded_logreg"] = dict(f=tf, evals=te)
    print("torch.optim.LBFGS(strong_wolfe) on unbounded_logreg:", tf, te, "evals")
    batch("unbounded_logreg", [dict(fg=logreg_fg(X, y, lam, d, k), x0=np.zeros(d * k + k), lo=None,
                                    hi=None)],
          dict(X=X[None].astype(np.float32), y=y[None].astype(np.int64), lam=np.array([lam]),
               torch_f=np.array([tf]), torch_evals=np.array([float(te)])), meta)

    with open(os.path.join(OUT, "ref.json"), "w") as fh:
        json.dump(meta, fh, indent=1)


if __name__ == "__main__":
    main()
