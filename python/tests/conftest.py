"""Shared fixtures: the CLI to compare with, MNIST test images, a small zoo model and a TorchScript twin."""

import gzip
import json
import os
import subprocess
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def cli_path() -> Path:
    """The `blindspot` binary: $BLINDSPOT_CLI, else the debug build (scripts/python.sh test builds it)."""
    p = Path(os.environ.get("BLINDSPOT_CLI", ROOT / "target/debug/blindspot"))
    if not p.exists():
        pytest.skip(f"no CLI at {p}: build it (cargo build --bin blindspot) or set BLINDSPOT_CLI")
    return p


def run_cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, BLINDSPOT_NO_PROGRESS="1")
    r = subprocess.run([str(cli_path()), *args], capture_output=True, text=True, env=env)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def mnist_test(n: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """MNIST test images [n, 1, 28, 28] in [0, 1] and labels, converted as the engine converts them."""
    d = ROOT / "assets/mnist"
    with gzip.open(d / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(d / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    x, y = x[:n], y[:n]
    return torch.from_numpy(x.copy()).to(torch.float32).div(255.0), torch.from_numpy(y.astype(np.int64))


class Mlp(torch.nn.Module):
    """784-32-10 sigmoid MLP: the zoo model's twin as a TorchScript module (with the layer protocol)."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(784, 32)
        self.fc2 = torch.nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.sigmoid(self.fc1(x.flatten(1))))

    @torch.jit.export
    def input_shape(self) -> List[int]:
        return [1, 28, 28]


@pytest.fixture(scope="session")
def mlp() -> Mlp:
    torch.manual_seed(0)
    m = Mlp().eval()
    with torch.no_grad():  # larger weights: a model that is not uniform on MNIST
        for p in m.parameters():
            p.mul_(4.0)
    return m


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory, mlp) -> Path:
    """The MLP as a zoo model folder (model.json + weights.safetensors)."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("zoo") / "mlp"
    d.mkdir()
    arch = {
        "input_shape": [1, 28, 28],
        "layers": [
            {"kind": "linear", "name": "fc1", "in_features": 784, "out_features": 32},
            {"kind": "sigmoid"},
            {"kind": "linear", "name": "fc2", "in_features": 32, "out_features": 10},
        ],
    }
    (d / "model.json").write_text(json.dumps({"format": "blindspot-model/1", "name": "mlp", "architecture": arch}))
    save_file({k: v.contiguous() for k, v in mlp.state_dict().items()}, str(d / "weights.safetensors"))
    return d


@pytest.fixture(scope="session")
def script_file(tmp_path_factory, mlp) -> Path:
    p = tmp_path_factory.mktemp("ts") / "mlp.pt"
    torch.jit.script(mlp).save(str(p))
    return p


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-for-bit comparisons with the CLI's --threads 1."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
