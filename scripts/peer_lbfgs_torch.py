#!/usr/bin/env python3
"""Batched PyTorch peer of `blindspot attack` (issue 15, item 2): the same targeted attack on the same zoo
model, images and targets, written as a plain PyTorch loop that keeps everything on the device, for a
throughput comparison on a GPU (`scripts/gpu_validate.sh` runs both).

Same objective and c search as src/attack/lbfgs.rs: minimise ‖r‖₂² + c·CE(x + r, target) over x + r ∈ [0, 1]
per example; c starts at 1, is multiplied (failure) or divided (success) by 3 until bracketed, then bisected
geometrically until c_hi/c_lo ≤ 1.05 (at most 40 solves); each solve starts at the original image, runs at
most 100 iterations and keeps the best adversarial seen. Each solve is a *projected* L-BFGS (two-loop
recursion with m = 5 on the free coordinates, projected backtracking Armijo search; stop when the projected
gradient's ∞-norm < 1e-3): a simpler method than L-BFGS-B's generalised Cauchy point, so distortions may
differ slightly; what it is for is images/s with all work batched on the device.

`--solver rows` (default; CPU-friendly): each row stops on its own by the same tests as ours (projected
gradient < 1e-3, relative reduction <= factr·ε with factr 1e12, 100 iterations) and leaves the working set,
and only rows failing Armijo are re-evaluated; `--solver all`: every row iterates until all converge (one
sync per iteration, GPU-style; on a CPU ~15× slower).

usage: peer_lbfgs_torch.py --model <zoo model dir> --ours <attack.csv> [--split train] [--n N]
                           [--batch 10000] [--device cuda] [--solver rows|all] [--out res.json]
Targets come from our CSV (its `index` and `target` columns), so both attack the same images.
"""
import argparse, csv, gzip, json, os, sys, time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_in_pytorch import load  # noqa: E402


def mnist(d, split):
    pre = "t10k" if split == "test" else "train"
    with gzip.open(os.path.join(d, f"{pre}-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    with gzip.open(os.path.join(d, f"{pre}-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def objective(model, x0, r_x, c, t):
    """f [b] and its gradient [b, n] at x = r_x (flat)."""
    x = r_x.detach().requires_grad_(True)
    logits = model(x.view(-1, 1, 28, 28))
    ce = torch.nn.functional.cross_entropy(logits, t, reduction="none")
    f = ((x - x0) ** 2).sum(1) + c * ce
    (g,) = torch.autograd.grad(f.sum(), x)
    return f.detach(), g, logits.detach()


def push_pair(S, Y, rho, k, m, s, y):
    """Store (s, y) [b, n] as the newest pair of the ring (rows with sᵀy <= 1e-10 store zeros); returns the
    ring and the pair count k + 1."""
    sy = (s * y).sum(1)
    keep = sy > 1e-10
    if k < m:
        slot = k
    else:  # drop the oldest pair
        S, Y, rho = S.roll(-1, 0), Y.roll(-1, 0), rho.roll(-1, 0)
        slot = m - 1
    S[slot] = torch.where(keep[:, None], s, torch.zeros_like(s))
    Y[slot] = torch.where(keep[:, None], y, torch.zeros_like(y))
    rho[slot] = torch.where(keep, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy))
    return S, Y, rho, k + 1


def direction(g, pg, free, S, Y, rho, k, m):
    """The projected L-BFGS direction [b, n]: two-loop recursion over the ring S, Y [m, b, n] on the free
    coordinates (steepest descent on them where that is no descent)."""
    q = pg.clone()
    alpha = []
    for j in reversed(range(min(k, m))):
        a = rho[j] * (S[j] * q).sum(1)
        q -= a[:, None] * Y[j]
        alpha.append((j, a))
    if k > 0:
        j = (k - 1) % m if k <= m else m - 1
        gamma = (S[j] * Y[j]).sum(1) / (Y[j] * Y[j]).sum(1).clamp_min(1e-30)
        q *= gamma[:, None]
    else:
        q /= pg.norm(dim=1, keepdim=True).clamp_min(1e-12)
    for j, a in reversed(alpha):
        bta = rho[j] * (Y[j] * q).sum(1)
        q += (a - bta)[:, None] * S[j]
    d = -torch.where(free, q, torch.zeros_like(q))
    gtd = (g * d).sum(1)
    return torch.where((gtd < 0)[:, None], d, -pg)


def solve(model, x0, c, t, m=5, max_iter=100, pgtol=1e-3):
    """Projected L-BFGS from x0 for every row; returns (best adversarial x [b, n], its ‖r‖² (inf if none))."""
    b, n = x0.shape
    x = x0.clone()
    f, g, logits = objective(model, x0, x, c, t)
    best_x, best_d = x0.clone(), torch.full((b,), float("inf"), device=x0.device)
    S = torch.zeros(m, b, n, device=x0.device)
    Y = torch.zeros(m, b, n, device=x0.device)
    rho = torch.zeros(m, b, device=x0.device)
    k = 0
    for _ in range(max_iter):
        ok = logits.argmax(1) == t
        d2 = ((x - x0) ** 2).sum(1)
        better = ok & (d2 < best_d)
        best_x = torch.where(better[:, None], x, best_x)
        best_d = torch.where(better, d2, best_d)
        free = ~(((x <= 0) & (g > 0)) | ((x >= 1) & (g < 0)))
        pg = torch.where(free, g, torch.zeros_like(g))
        if pg.abs().amax(1).max() < pgtol:  # one sync per iteration
            break
        d = direction(g, pg, free, S, Y, rho, k, m)
        step = torch.ones(b, device=x0.device)
        for _ls in range(10):  # projected backtracking, all rows at once
            xn = (x + step[:, None] * d).clamp(0, 1)
            fn, gn, ln = objective(model, x0, xn, c, t)
            good = fn <= f + 1e-4 * (g * (xn - x)).sum(1)
            if bool(good.all()):
                break
            step = torch.where(good, step, step * 0.5)
        S, Y, rho, k = push_pair(S, Y, rho, k, m, xn - x, gn - g)
        x, f, g, logits = xn, fn, gn, ln
    ok = logits.argmax(1) == t
    d2 = ((x - x0) ** 2).sum(1)
    better = ok & (d2 < best_d)
    return torch.where(better[:, None], x, best_x), torch.where(better, d2, best_d)


def solve_rows(model, x0, c, t, m=5, max_iter=100, pgtol=1e-3, factr=1e12):
    """The same projected L-BFGS, but each row stops on its own (projected gradient < pgtol, relative
    reduction of f <= factr * eps as scipy and `blindspot` test it, or max_iter) and leaves the working
    set, and backtracking re-evaluates only the rows that failed the Armijo test: the CPU-friendly form
    (a GPU may prefer `solve`, which keeps every row until all converge). Returns (x [b, n] where each
    row stopped, its ‖r‖² if adversarial else inf)."""
    b, n = x0.shape
    dev = x0.device
    tol = factr * 2.220446049250313e-16
    out_x = x0.clone()
    rows = torch.arange(b, device=dev)  # working set -> original row
    xw, x0w, cw, tw = x0.clone(), x0, c, t
    f, g, logits = objective(model, x0w, xw, cw, tw)
    S = torch.zeros(m, b, n, device=dev)
    Y = torch.zeros(m, b, n, device=dev)
    rho = torch.zeros(m, b, device=dev)
    k = 0
    for it in range(max_iter + 1):
        free = ~(((xw <= 0) & (g > 0)) | ((xw >= 1) & (g < 0)))
        pg = torch.where(free, g, torch.zeros_like(g))
        done = pg.abs().amax(1) < pgtol
        if it == max_iter:
            done = torch.ones_like(done)
        if it > 0:
            done |= (f_prev - f) <= tol * torch.maximum(f_prev.abs(), f.abs()).clamp_min(1.0)
        if bool(done.any()):
            out_x[rows[done]] = xw[done]
            keep = ~done
            rows, xw, x0w, cw, tw = rows[keep], xw[keep], x0w[keep], cw[keep], tw[keep]
            f, g, pg, free = f[keep], g[keep], pg[keep], free[keep]
            S, Y, rho = S[:, keep], Y[:, keep], rho[:, keep]
            if rows.numel() == 0:
                break
        d = direction(g, pg, free, S, Y, rho, k, m)
        step = torch.ones(xw.shape[0], device=dev)
        xn = (xw + d).clamp(0, 1)
        fn, gn, _ = objective(model, x0w, xn, cw, tw)
        for _ls in range(10):  # projected backtracking of the rows that fail Armijo only
            bad = ~(fn <= f + 1e-4 * (g * (xn - xw)).sum(1))
            if not bool(bad.any()):
                break
            step = torch.where(bad, step * 0.5, step)
            idx = bad.nonzero().squeeze(1)
            xb = (xw[idx] + step[idx, None] * d[idx]).clamp(0, 1)
            fb, gb, _ = objective(model, x0w[idx], xb, cw[idx], tw[idx])
            xn[idx], fn[idx], gn[idx] = xb, fb, gb
        S, Y, rho, k = push_pair(S, Y, rho, k, m, xn - xw, gn - g)
        f_prev = f
        xw, f, g = xn, fn, gn
    with torch.no_grad():
        ok = model(out_x.view(-1, 1, 28, 28)).argmax(1) == t
    d2 = ((out_x - x0) ** 2).sum(1)
    return out_x, torch.where(ok, d2, torch.full_like(d2, float("inf")))


def attack(model, x0, t, dev, rows=False):
    b = x0.shape[0]
    c = torch.ones(b, device=dev)
    lo = torch.zeros(b, device=dev)
    hi = torch.full((b,), float("inf"), device=dev)
    best_x, best_d = x0.clone(), torch.full((b,), float("inf"), device=dev)
    for _ in range(40):
        active = ~(torch.isfinite(hi) & (lo > 0) & (hi / lo.clamp_min(1e-30) <= 1.05)) & (c <= 1e6) & (c >= 1e-6)
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xa, da = (solve_rows if rows else solve)(model, x0[idx], c[idx], t[idx])
        succ = torch.isfinite(da)
        better = succ & (da < best_d[idx])
        best_x[idx] = torch.where(better[:, None], xa, best_x[idx])
        best_d[idx] = torch.where(better, da, best_d[idx])
        ci = c[idx]
        hi[idx] = torch.where(succ, torch.minimum(hi[idx], ci), hi[idx])
        lo[idx] = torch.where(succ, lo[idx], torch.maximum(lo[idx], ci))
        nlo, nhi = lo[idx], hi[idx]
        bracketed = torch.isfinite(nhi) & (nlo > 0)
        c[idx] = torch.where(bracketed, (nlo * nhi.clamp_max(1e30)).sqrt(),
                             torch.where(succ, ci / 3.0, ci * 3.0))
    return best_x, best_d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ours", required=True, help="attack.csv of our run (indices and targets)")
    ap.add_argument("--split", default="train", choices=["train", "test"])
    ap.add_argument("--mnist", default="assets/mnist")
    ap.add_argument("--n", type=int, default=0, help="first n rows of the CSV (0: all)")
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="")
    ap.add_argument("--solver", default="rows", choices=["rows", "all"],
                    help="rows: each row stops on its own and leaves the working set (CPU); all: every row "
                         "iterates until all converge (GPU-style, one sync per iteration)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = load(a.model)[0].to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x, _ = mnist(a.mnist, a.split)
    rows = list(csv.DictReader(open(a.ours)))
    rows = rows[: a.n] if a.n else rows
    idx = torch.tensor([int(r["index"]) for r in rows])
    tg = torch.tensor([int(r["target"]) for r in rows])
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    succ, dist = [], []
    for s in range(0, len(rows), a.batch):
        xb = x[idx[s:s + a.batch]].view(-1, 784).to(dev)
        _, d2 = attack(model, xb, tg[s:s + a.batch].to(dev), dev, rows=a.solver == "rows")
        ok = torch.isfinite(d2)
        succ.append(ok.cpu())
        dist.append((d2.clamp_max(1e30) / 784).sqrt().cpu())
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    secs = time.perf_counter() - t0
    succ, dist = torch.cat(succ), torch.cat(dist)
    res = {
        "peer": f"peer_lbfgs_torch.py (projected L-BFGS, batched, solver {a.solver})", "device": str(dev), "torch": torch.__version__,
        "examples": len(rows), "success_rate": succ.float().mean().item(),
        "mean_distortion": dist[succ].mean().item() if succ.any() else float("nan"),
        "seconds": secs, "images_per_second": len(rows) / secs,
    }
    print(json.dumps(res))
    if a.out:
        json.dump(res, open(a.out, "w"), indent=2)


if __name__ == "__main__":
    main()
