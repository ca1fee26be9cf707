#!/usr/bin/env python3
"""Measured single-thread f32 matmul peak (GFLOP/s) for docs/benchmarks.md: best of 5 runs of
[N, K] x [K, M] products the size of the attack's layers and a square 1024 product."""
import time, torch
torch.set_num_threads(1)
for (n, k, m) in [(1024, 1024, 1024), (10000, 784, 100)]:
    a, b = torch.randn(n, k), torch.randn(k, m)
    best = 1e9
    for _ in range(5):
        t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
    print(f"{n}x{k}x{m}: {2 * n * k * m / best / 1e9:.1f} GFLOP/s")
