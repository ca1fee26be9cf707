#!/usr/bin/env python3
"""Reference for tests/attack.rs: exact minimal targeted distortions of a linear softmax classifier.

For logits z = W x + b the set {x' in [0,1]^n : argmax z(x') = t} is a polyhedron, so the minimal
perturbation min ||x' - x||_2 s.t. (W_t - W_j) x' + b_t - b_j >= 0 (j != t), 0 <= x' <= 1 is a convex QP,
solved here with scipy's SLSQP (tight tolerance) and checked by KKT-free feasibility. The paper's
attack (§4.1, L-BFGS + c search) must find an adversarial no further than ~2% beyond this minimum.
Input shape [1, 4, 4] (n = 16), 3 classes: also checks that the attack is not tied to MNIST's shape.

writes tests/fixtures/attack/linear_qp.json
"""
import json, os
import numpy as np
from scipy.optimize import minimize

rng = np.random.default_rng(7)
n, k, m = 16, 3, 12
W = rng.normal(0, 1.0, (k, n))
b = rng.normal(0, 0.5, k)
X = rng.uniform(0.1, 0.9, (m, n))
labels = np.argmax(X @ W.T + b, axis=1)
targets = (labels + 1 + rng.integers(0, k - 1, m)) % k
ref = []
for x, t in zip(X, targets):
    cons = [{"type": "ineq", "fun": (lambda xp, j=j, t=t: (W[t] - W[j]) @ xp + b[t] - b[j]),
             "jac": (lambda xp, j=j, t=t: W[t] - W[j])} for j in range(k) if j != t]
    best = None
    for start in [x, np.clip(x + 0.3 * (W[t] - W.mean(0)), 0, 1)]:
        r = minimize(lambda xp: np.sum((xp - x) ** 2), start, jac=lambda xp: 2 * (xp - x),
                     bounds=[(0, 1)] * n, constraints=cons, method="SLSQP",
                     options={"ftol": 1e-14, "maxiter": 1000})
        ok = all(c["fun"](r.x) >= -1e-7 for c in cons) and r.x.min() >= -1e-9 and r.x.max() <= 1 + 1e-9
        if ok and (best is None or r.fun < best):
            best = r.fun
    assert best is not None
    ref.append(float(np.sqrt(best / n)))
out = {"input_shape": [1, 4, 4], "classes": k, "weight": W.ravel().tolist(), "bias": b.tolist(),
       "x": X.ravel().tolist(), "labels": labels.tolist(), "targets": targets.tolist(),
       "min_distortion": ref}
p = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "attack", "linear_qp.json")
json.dump(out, open(p, "w"))
print("min distortions", np.round(ref, 4))
