#!/usr/bin/env python3
"""Fixtures for tests/spectral.rs (paper §4.3, Table 5): two small TorchScript nets and scipy references.

Writes into tests/fixtures/spectral/:
  mini_alexnet.pt   torchvision AlexNet *layout* (features.0 … classifier.6, same strides/paddings/pools)
                    with small widths, random weights (seed 0); input 3×63×63.
  custom.pt         a net needing a spec: conv (stride 2, dilation 2, groups 2) → relu → max-pool 3/2 pad 1
                    → conv (stride 3) → sigmoid → avg-pool 2 → flatten → linear; input 4×23×19.
  custom.yaml       its layer spec.
  lrn.pt, lrn.yaml  conv → relu → LocalResponseNorm(5, α 0.1, β 0.75, k 2) → max-pool 2 → linear; input 3×8×8,
                    and its spec; reference["lrn"]["sup_jacobian"]: the largest ‖J‖ of that LRN found by
                    gradient ascent (scripts/lrn_lipschitz.py), which our proven bound must not undercut.
  reference.json    per conv/linear layer: min/max singular values of the explicit dense operator
                    (zero padding: conv2d applied to basis vectors; circular: index arithmetic on the torus
                    rounded up to the stride) by scipy.linalg.svdvals; pooling factors by brute force.
Usage: /work/main/.venv/bin/python scripts/make_spectral_fixtures.py [outdir]
"""
import json, math, os, sys
import numpy as np
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "spectral")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)


class MiniAlexNet(nn.Module):
    def __init__(self, w=(8, 16, 16, 16, 8), fc=32, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, w[0], 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(w[0], w[1], 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(w[1], w[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w[2], w[3], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w[3], w[4], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(w[4] * 36, fc), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Linear(fc, classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Module()
        self.body.conv_a = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2)
        self.body.conv_b = nn.Conv2d(6, 5, (3, 2), stride=3, padding=1)
        self.head = nn.Module()
        self.head.fc = nn.Linear(5 * 1 * 1, 7)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.body.conv_a(x)), 3, 2, 1)
        x = F.avg_pool2d(torch.sigmoid(self.body.conv_b(x)), 2)
        return self.head.fc(torch.flatten(x, 1))


CUSTOM_YAML = """\
# Layer spec of custom.pt (see docs/spectral.md).
layers:
  - {param: body.conv_a, kind: conv2d, stride: 2, padding: 2, dilation: 2, groups: 2, in_channels: 4}
  - {kind: relu}
  - {kind: max_pool2d, kernel_size: 3, stride: 2, padding: 1, name: pool_a}
  - {param: body.conv_b, kind: conv2d, stride: 3, padding: 1, kernel_size: [3, 2]}
  - {kind: sigmoid}
  - {kind: avg_pool2d, kernel_size: 2}
  - {kind: flatten}
  - {param: head.fc, kind: linear, out_features: 7}
"""


class LrnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(5, alpha=0.1, beta=0.75, k=2.0)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = F.max_pool2d(self.lrn(F.relu(self.conv(x))), 2)
        return self.fc(torch.flatten(x, 1))


LRN_YAML = """\
# Layer spec of lrn.pt (see docs/spectral.md).
layers:
  - {param: conv, kind: conv2d, padding: 1}
  - {kind: relu}
  - {kind: local_response_norm, size: 5, alpha: 0.1, beta: 0.75, k: 2.0, name: lrn}
  - {kind: max_pool2d, kernel_size: 2}
  - {kind: flatten}
  - {param: fc, kind: linear}
"""


def zero_matrix(conv, shape):
    n = int(np.prod(shape))
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    with torch.no_grad():
        y = F.conv2d(eye, conv.weight.double(), None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return y.reshape(n, -1).T.numpy(), list(y.shape[1:])


def circular_matrix(conv, shape):
    w = conv.weight.detach().double().numpy()
    f, cg, kh, kw = w.shape
    g = conv.groups
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    c, h, wd = shape
    nh, nw = -(-h // sh) * sh, -(-wd // sw) * sw
    mh, mw = nh // sh, nw // sw
    a = np.zeros((f, mh, mw, c, nh, nw))
    fpg = f // g
    for fo in range(f):
        for cl in range(cg):
            ci = (fo // fpg) * cg + cl
            for ka in range(kh):
                for kb in range(kw):
                    for i in range(mh):
                        r = (sh * i + dh * ka - ph) % nh
                        cols = (sw * np.arange(mw) + dw * kb - pw) % nw
                        for j in range(mw):
                            a[fo, i, j, ci, r, cols[j]] += w[fo, cl, ka, kb]
    return a.reshape(f * mh * mw, c * nh * nw)


def svd_minmax(a):
    s = scipy.linalg.svdvals(a)
    return float(s.min()), float(s.max())


def maxpool_brute(shape, k, s, p):
    """√(max number of windows covering one pixel), by perturbing each pixel of a ramp input."""
    c, h, w = shape
    best = 0.0
    x = torch.zeros(1, 1, h, w, dtype=torch.float64)
    base = F.max_pool2d(x - 1e3, k, s, p)
    for i in range(h):
        for j in range(w):
            y = x.clone() - 1e3
            y[0, 0, i, j] = 0.0
            d = F.max_pool2d(y, k, s, p) - base
            best = max(best, float(d.norm() / 1e3))
    return best


def describe(model, convs, linears, pools, shape):
    ref = {"input_shape": list(shape), "layers": {}}
    cur = list(shape)
    for name, conv in convs:
        a, out = zero_matrix(conv, cur)
        lo, hi = svd_minmax(a)
        clo, chi = svd_minmax(circular_matrix(conv, cur))
        ref["layers"][name] = {"kind": "conv2d", "input_shape": cur, "zero_lower": lo, "zero_upper": hi,
                               "circular_lower": clo, "circular_upper": chi}
        cur = pools.get(name, lambda o: o)(out)
    for name, lin in linears:
        lo, hi = svd_minmax(lin.weight.detach().double().numpy())
        ref["layers"][name] = {"kind": "linear", "lower": lo, "upper": hi}
    return ref


def main():
    mini = MiniAlexNet().eval()
    f = mini.features
    pool = lambda o: [o[0], (o[1] - 3) // 2 + 1, (o[2] - 3) // 2 + 1]
    ref_mini = describe(mini, [("features.0", f[0]), ("features.3", f[3]), ("features.6", f[6]),
                              ("features.8", f[8]), ("features.10", f[10])],
                        [("classifier.1", mini.classifier[1]), ("classifier.4", mini.classifier[4]),
                         ("classifier.6", mini.classifier[6])],
                        {"features.0": pool, "features.3": pool}, (3, 63, 63))
    ref_mini["maxpool_factor_features.2"] = maxpool_brute((8, 15, 15), 3, 2, 0)
    x = torch.rand(2, 3, 63, 63, generator=torch.Generator().manual_seed(5))
    ref_mini["logits_input_seed"] = 5
    torch.jit.script(mini).save(os.path.join(OUT, "mini_alexnet.pt"))

    cus = Custom().eval()
    after_a = lambda o: [o[0], (o[1] + 2 - 3) // 2 + 1, (o[2] + 2 - 3) // 2 + 1]
    ref_cus = describe(cus, [("body.conv_a", cus.body.conv_a), ("body.conv_b", cus.body.conv_b)],
                       [("head.fc", cus.head.fc)], {"body.conv_a": after_a}, (4, 23, 19))
    ca = ref_cus["layers"]["body.conv_a"]
    ref_cus["maxpool_factor_pool_a"] = maxpool_brute((6, 11, 9), 3, 2, 1)
    with torch.no_grad():
        ref_cus["logits_zero_input"] = cus(torch.zeros(1, 4, 23, 19)).flatten().tolist()
    torch.jit.script(cus).save(os.path.join(OUT, "custom.pt"))
    with open(os.path.join(OUT, "custom.yaml"), "w") as fh:
        fh.write(CUSTOM_YAML)
    torch.manual_seed(1)
    lrn = LrnNet().eval()
    torch.jit.script(lrn).save(os.path.join(OUT, "lrn.pt"))
    with open(os.path.join(OUT, "lrn.yaml"), "w") as fh:
        fh.write(LRN_YAML)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from lrn_lipschitz import sup_jacobian
    ref_lrn = {"size": 5, "alpha": 0.1, "beta": 0.75, "k": 2.0,
               "sup_jacobian": sup_jacobian(5, 0.1, 0.75, 2.0, channels=8, restarts=10, steps=150)}
    with open(os.path.join(OUT, "reference.json"), "w") as fh:
        json.dump({"mini_alexnet": ref_mini, "custom": ref_cus, "lrn": ref_lrn}, fh, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
