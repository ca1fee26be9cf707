"""blindspot.attack: equal to the CLI bit for bit, clear errors, GIL released, Ctrl-C."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

import blindspot
from conftest import ROOT, mnist_test, run_cli


def cli_attack(model, out, *args):
    run_cli("attack", "--model", str(model), "--out", str(out), "--threads", "1", *args)
    t = load_file(str(out / "adversarial.safetensors"))
    # The rows at full precision (attack.csv rounds the distortion): the chunks' JSON files.
    rows = [row for f in sorted((out / "chunks").glob("chunk-*.json")) for row in json.loads(f.read_text())]
    return t, rows


def same_as_cli(r: blindspot.AttackResult, t, rows):
    assert torch.equal(r.adversarial, t["adversarial"])
    assert r.success.tolist() == [bool(v) for v in t["success"].tolist()]
    assert r.evaluations.tolist() == [int(row["evaluations"]) for row in rows]
    assert r.iterations.tolist() == [int(row["iterations"]) for row in rows]
    assert r.already_adversarial.tolist() == [row["already_adversarial"] for row in rows]
    for key in ("distortion", "c", "margin"):
        ours = getattr(r, key).tolist()
        theirs = [math.nan if row[key] is None else row[key] for row in rows]
        assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(ours, theirs)), key


def test_untargeted_zoo_folder_equals_the_cli(zoo_dir, tmp_path):
    t, rows = cli_attack(zoo_dir, tmp_path / "cli", "--first", "12", "--batch", "5", "--untargeted")
    with torch.no_grad():  # the caller's grad mode does not reach the engine's thread
        r = blindspot.attack(zoo_dir, t["original"], t["label"], batch=5)
    same_as_cli(r, t, rows)
    assert r.success.all() and len(r) == 12
    assert torch.equal(r.label, t["label"])


@pytest.mark.parametrize("kind", ["load_model", "script", "file"])
def test_targeted_modules_equal_the_cli(kind, zoo_dir, script_file, mlp, tmp_path):
    targets = tmp_path / "targets.txt"
    _, y = mnist_test(10)
    tg = (y + 3) % 10
    targets.write_text("\n".join(map(str, tg.tolist())))
    cli_model = script_file if kind in ("script", "file") else zoo_dir
    t, rows = cli_attack(cli_model, tmp_path / "cli", "--first", "10", "--batch", "4", "--targets", str(targets))
    model = {
        "load_model": lambda: blindspot.load_model(zoo_dir),
        "script": lambda: torch.jit.script(mlp),
        "file": lambda: str(script_file),
    }[kind]()
    r = blindspot.attack(model, t["original"], t["label"], tg, batch=4)
    same_as_cli(r, t, rows)
    assert r.target.tolist() == tg.tolist()
    # Every success is classified as its target by the caller's own forward pass too.
    with torch.no_grad():
        pred = mlp(r.adversarial).argmax(1)
    assert (pred[r.success] == tg[r.success]).all()


def test_min_margin_reaches_the_engine(zoo_dir, tmp_path):
    t, rows = cli_attack(zoo_dir, tmp_path / "cli", "--first", "6", "--min-margin", "2.5")
    r = blindspot.attack(zoo_dir, t["original"], t["label"], t["target"], min_margin=2.5)
    same_as_cli(r, t, rows)
    assert r.success.any() and (r.margin[r.success] >= 2.5).all()
    with pytest.raises(ValueError, match="min_margin"):
        blindspot.attack(zoo_dir, t["original"], t["label"], min_margin=-1.0)


def test_c_search_and_warm_start_reach_the_engine(zoo_dir, tmp_path):
    t, rows = cli_attack(zoo_dir, tmp_path / "cli", "--first", "6", "--c-search", "bisect", "--warm-start", "original")
    r = blindspot.attack(zoo_dir, t["original"], t["label"], t["target"], c_search="bisect", warm_start="original")
    same_as_cli(r, t, rows)
    # The defaults (secant, nearest) search differently: fewer evaluations on the same examples.
    d = blindspot.attack(zoo_dir, t["original"], t["label"], t["target"])
    assert d.evaluations.sum() < r.evaluations.sum()
    with pytest.raises((ValueError, blindspot.BlindspotError), match="c_search|variant"):
        blindspot.attack(zoo_dir, t["original"], t["label"], c_search="golden")


def test_load_model_is_a_scripted_module_with_the_layer_protocol(zoo_dir, mlp):
    m = blindspot.load_model(zoo_dir)
    assert isinstance(m, torch.jit.ScriptModule) and not m.training
    x, _ = mnist_test(4)
    with torch.no_grad():
        assert torch.allclose(m(x), mlp(x), atol=1e-5)
        assert m.layer_names() == ["fc1", "fc1.sigmoid", "fc2", "logits"]
        assert m.layer(x, "fc1.sigmoid").shape == (4, 32)
    assert m.input_shape() == [1, 28, 28]


class Flat(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).sum(1)  # [B], not [B, classes]


def test_bad_inputs_raise_clear_exceptions(zoo_dir, mlp):
    x, y = mnist_test(3)
    with pytest.raises(TypeError, match="float32"):
        blindspot.attack(zoo_dir, x.double(), y)
    with pytest.raises(ValueError, match="input is on cpu but the call runs on cuda"):
        blindspot.attack(zoo_dir, x, y, device="cuda")
    with pytest.raises(ValueError, match=r"box|\[0, 1\]"):
        blindspot.attack(zoo_dir, x * 2 - 0.5, y)
    with pytest.raises(ValueError, match="labels must have shape"):
        blindspot.attack(zoo_dir, x, y[:2])
    with pytest.raises(ValueError, match="label"):
        blindspot.attack(zoo_dir, x, y + 10)
    with pytest.raises(ValueError, match="target"):
        blindspot.attack(zoo_dir, x, y, y)
    with pytest.raises(ValueError, match=r"expects inputs \[B, 1, 28, 28\]"):
        blindspot.attack(zoo_dir, x[:, :, :20], y)
    with pytest.raises(TypeError, match="eager torch.nn.Module"):
        blindspot.attack(mlp, x, y)
    with pytest.raises(blindspot.BlindspotError, match=r"\[1\]|logits"):
        blindspot.attack(torch.jit.script(Flat()), x, y)
    with pytest.raises(ValueError, match="unknown field"):
        blindspot.spectral(zoo_dir, mode="zero", tolerance=1e-3)


def test_errors_carry_the_cli_message(tmp_path):
    missing = tmp_path / "nope"
    cli = run_cli("attack", "--model", str(missing), "--out", str(tmp_path / "o"), ok=False)
    line = cli.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    x, y = mnist_test(2)
    with pytest.raises(blindspot.BlindspotError) as e:
        blindspot.attack(missing, x, y)
    assert str(e.value) == line[len("error: "):]


def test_the_gil_is_released_during_an_attack(zoo_dir):
    x, y = mnist_test(2000)
    ticks, done = [0], threading.Event()

    def count():
        while not done.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    th = threading.Thread(target=count)
    th.start()
    t0 = time.perf_counter()
    # The slow search on purpose (~1 s here): long enough to tell a blocked thread from a free one.
    blindspot.attack(zoo_dir, x, y, (y + 1) % 10, batch=2000, c_rel_tol=1e-3, c_search="bisect",
                     warm_start="original")
    secs = time.perf_counter() - t0
    before = ticks[0]
    done.set()
    th.join()
    # A thread blocked on the GIL would not tick at all; a free one ticks about once a millisecond.
    assert secs > 0.2, f"attack too short to tell ({secs:.2f} s)"
    assert before > 0.25 * secs * 1000, (before, secs)


def test_ctrl_c_interrupts_a_long_attack_cleanly(zoo_dir):
    script = textwrap.dedent(f"""
        import os, signal, threading, time, torch, blindspot
        import sys; sys.path.insert(0, {str(ROOT / 'python/tests')!r})
        from conftest import mnist_test
        torch.set_num_threads(1)
        # A workload far longer than the timer (tens of seconds uninterrupted, even on a quiet box), so
        # that "finished" can only mean the interruption did not work, never that the attack was fast.
        x, y = mnist_test(10000)
        # Python keeps SIGINT ignored when it starts with it ignored (a job run in the background by a
        # non-interactive shell, as CI may): install the KeyboardInterrupt handler explicitly.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t0 = time.perf_counter()
        try:
            blindspot.attack({str(zoo_dir)!r}, x, y, (y + 1) % 10, batch=10000, c_rel_tol=1e-6, max_iter=1000)
            print(f"finished after {{time.perf_counter() - t0:.2f}} s", flush=True)
        except KeyboardInterrupt:
            print(f"interrupted after {{time.perf_counter() - t0:.2f}} s", flush=True)
        r = blindspot.attack({str(zoo_dir)!r}, x[:2], y[:2])  # the engine still works
        print("then", r.success.tolist(), flush=True)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("interrupted after"), p.stdout
    assert float(lines[0].split()[2]) < 4.0, p.stdout
    assert lines[1].startswith("then [True, True]"), p.stdout


def test_import_refuses_another_torch_version():
    code = "import torch; torch.__version__ = '2.10.1'; import blindspot"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode != 0
    assert "ImportError: blindspot 0.1.0 needs torch 2.11.x" in p.stderr, p.stderr


def test_the_extension_links_the_libtorch_next_to_it():
    import blindspot._blindspot as ext

    p = subprocess.run(["readelf", "-d", ext.__file__], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("no readelf")
    runpath = [line for line in p.stdout.splitlines() if "RUNPATH" in line or "RPATH" in line]
    assert runpath and all("[$ORIGIN/../torch/lib]" in line for line in runpath), runpath
    assert "libtorch_cpu.so" in p.stdout
    assert blindspot.torch_version().startswith("2.11.")
