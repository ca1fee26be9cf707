#!/usr/bin/env python3
"""Largest spectral norm of the Jacobian of local response normalisation found by gradient ascent
(paper §4.3: the Lipschitz factor of an LRN layer; see src/spectral/pool.rs for the proven bound).

LRN acts per pixel across channels, so one pixel with `channels` channels is searched. Random restarts at
scales around the knee of the normaliser (α/n Σa² ≈ k/β), Adam on −‖J(a)‖₂, plus the point a = 0 where
J = k^(−β) I. Prints, for each parameter set, k^(−β), the largest ‖J‖ found and the bound blindspot uses.

usage: lrn_lipschitz.py [--channels 8] [--restarts 20] [--steps 150]"""
import argparse, math
import torch
import torch.nn.functional as F


def jacobian_norm(a, size, alpha, beta, k):
    c = a.numel()
    f = lambda z: F.local_response_norm(z.view(1, c, 1, 1), size, alpha, beta, k).view(c)
    j = torch.autograd.functional.jacobian(f, a, create_graph=True)
    return torch.linalg.matrix_norm(j, 2)


def sup_jacobian(size, alpha, beta, k, channels=8, restarts=20, steps=150, seed=0):
    g = torch.Generator().manual_seed(seed)
    best = jacobian_norm(torch.zeros(channels, dtype=torch.float64), size, alpha, beta, k).item()
    knee = math.sqrt(k / max(beta, 1e-3) / max(alpha, 1e-12))
    for _ in range(restarts):
        scale = knee * (0.1 + 3.0 * torch.rand(1, generator=g).item())
        a = (torch.randn(channels, dtype=torch.float64, generator=g) * scale).requires_grad_()
        opt = torch.optim.Adam([a], lr=0.05 * knee)
        for _ in range(steps):
            opt.zero_grad()
            v = -jacobian_norm(a, size, alpha, beta, k)
            v.backward()
            opt.step()
            best = max(best, -v.item())
    return best


def bound(size, beta, k):
    at_zero = k ** -beta
    h = at_zero * beta ** beta / (beta + 1) ** (beta + 1)
    return at_zero + 2 * beta * size ** 0.75 * h


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--steps", type=int, default=150)
    a = ap.parse_args()
    for p in [(5, 1e-4, 0.75, 2.0), (5, 1e-4, 0.75, 1.0), (3, 1.0, 0.75, 1.0), (2, 1.0, 1.5, 1.0), (5, 0.1, 0.75, 2.0)]:
        s = sup_jacobian(*p, channels=a.channels, restarts=a.restarts, steps=a.steps)
        print(f"size {p[0]} alpha {p[1]} beta {p[2]} k {p[3]}: k^-beta {p[3] ** -p[2]:.6f}  "
              f"largest |J| found {s:.6f}  proven bound {bound(p[0], p[2], p[3]):.6f}")
