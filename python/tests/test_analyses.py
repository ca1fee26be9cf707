"""blindspot.spectral and blindspot.units: equal to the CLI's outputs."""

from __future__ import annotations

import json

import torch

import blindspot
from conftest import mnist_test, run_cli


def test_spectral_equals_the_cli(zoo_dir, tmp_path):
    out = tmp_path / "spec"
    run_cli("spectral", "--model", str(zoo_dir), "--out", str(out), "--ascent-starts", "2", "--ascent-steps", "5")
    cli = json.loads((out / "bounds.json").read_text())
    for model in (zoo_dir, blindspot.load_model(zoo_dir)):
        r = blindspot.spectral(model, ascent_starts=2, ascent_steps=5)
        assert r.report["analysis"]["rows"] == cli["analysis"]["rows"]
        assert [b.layer for b in r.bounds] == [row["layer"] for row in cli["analysis"]["rows"]]
        assert all(b.upper > 0 for b in r.bounds)
        assert r.product_upper == cli["analysis"]["product_fft_bound"]
        assert r.report["empirical"] == cli["empirical"]


def test_units_equals_the_cli(zoo_dir, tmp_path):
    out = tmp_path / "units"
    opts = ["--units", "6", "--random", "6", "--top", "5", "--bootstrap", "200", "--seed", "3"]
    run_cli("units", "--model", str(zoo_dir), "--layer", "fc1", "--data", "mnist-test", "--out", str(out), "--no-figures", *opts)
    cli = json.loads((out / "summary.json").read_text())
    x, y = mnist_test()
    r = blindspot.units(blindspot.load_model(zoo_dir), "fc1", x, y, units=6, random=6, top=5, bootstrap=200, seed=3)
    ours = dict(r.summary)
    assert ours.pop("data").startswith("tensor") and cli.pop("data") == "mnist-test"
    assert ours == cli
    assert r.indices("unit").shape == (6, 5) and r.scores("random").shape == (6, 5)
    assert len(r.units) == 6 and r.random.shape == (32, 6)
    assert r.comparisons and r.conclusion
    # Without labels: the top lists only.
    r2 = blindspot.units(zoo_dir, "fc1", x[:500], units=3, random=2, top=4)
    assert torch.equal(r2.indices("unit"), blindspot.units(zoo_dir, "fc1", x[:500], units=3, random=2, top=4).indices("unit"))
