#!/usr/bin/env python3
"""Python call overhead vs the CLI (docs/benchmarks.md, "Python package"): the same targeted attack on the
10,000 MNIST test images with the same model folder, settings, batch and one thread, timed as
`blindspot attack` (the whole process: start, MNIST, attack, files) and as one `blindspot.attack` call
(model folder loaded by the call; images, labels and targets already in memory, read from the CLI's
output so both attack the same inputs). Checks that both give the same adversarials bit for bit.

usage: .venv/bin/python scripts/bench_python.py [--cli target/release/blindspot] [--rounds 2] [--n 10000]
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import blindspot

ROOT = Path(__file__).resolve().parents[1]


def zoo_mlp(d: Path) -> Path:
    """A seeded 784-32-10 sigmoid MLP as a zoo folder (the one of python/tests/conftest.py)."""
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(784, 32), torch.nn.Linear(32, 10)
    w = {"fc1.weight": fc1.weight * 4, "fc1.bias": fc1.bias * 4, "fc2.weight": fc2.weight * 4, "fc2.bias": fc2.bias * 4}
    arch = {"input_shape": [1, 28, 28], "layers": [
        {"kind": "linear", "name": "fc1", "in_features": 784, "out_features": 32}, {"kind": "sigmoid"},
        {"kind": "linear", "name": "fc2", "in_features": 32, "out_features": 10}]}
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.json").write_text(json.dumps({"format": "blindspot-model/1", "name": "mlp", "architecture": arch}))
    save_file({k: v.detach().contiguous() for k, v in w.items()}, str(d / "weights.safetensors"))
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=str(ROOT / "target/release/blindspot"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=10000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    model = zoo_mlp(tmp / "mlp")
    cli_s, py_s, cli_attack = [], [], []  # cli_attack: the CLI's own attack time (summary.json)
    for k in range(a.rounds):
        out = tmp / f"cli{k}"
        t0 = time.perf_counter()
        subprocess.run([a.cli, "attack", "--model", str(model), "--first", str(a.n), "--out", str(out), "--threads", "1"],
                       check=True, env=dict(os.environ, BLINDSPOT_NO_PROGRESS="1"), capture_output=True)
        cli_s.append(time.perf_counter() - t0)
        cli_attack.append(json.loads((out / "summary.json").read_text())["seconds"])
        t = load_file(str(out / "adversarial.safetensors"))
        t0 = time.perf_counter()
        r = blindspot.attack(model, t["original"], t["label"], t["target"])
        py_s.append(time.perf_counter() - t0)
        assert torch.equal(r.adversarial, t["adversarial"]), "results differ from the CLI's"
        print(f"round {k}: CLI {cli_s[-1]:.2f} s (attack {cli_attack[-1]:.2f} s), Python {py_s[-1]:.2f} s, "
              f"success {r.success_rate:.4f}", flush=True)
    c, p = min(cli_s), min(py_s)
    print(json.dumps({"images": a.n, "cli_s": cli_s, "cli_attack_s": cli_attack, "python_s": py_s, "cli_min": c,
                      "python_min": p, "overhead": p / c - 1, "overhead_vs_cli_attack": p / min(cli_attack) - 1}))


if __name__ == "__main__":
    sys.exit(main())
