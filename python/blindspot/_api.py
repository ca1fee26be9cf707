"""The public calls: ``attack``, ``spectral``, ``units`` (and ``load_model`` from ``_models``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from . import _blindspot
from ._models import Model, load_model, model_ref

BlindspotError = _blindspot.BlindspotError
BlindspotError.__doc__ = "An error of the blindspot engine; the message is the one the CLI prints."

Device = Union[str, torch.device, None]
_ATTACK_DEFAULTS: Dict[str, Any] = json.loads(_blindspot.attack_defaults())

__all__ = ["AttackResult", "BlindspotError", "SpectralResult", "UnitsResult", "attack", "load_model", "spectral", "units"]


def _device(device: Device, tensor: Optional[torch.Tensor]) -> torch.device:
    """The device to run on: ``device``, else the tensor's, which must be on it already (the engine
    loads its own copy of the model there)."""
    dev = torch.device(device) if device is not None else (tensor.device if tensor is not None else torch.device("cpu"))
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(dev)!r}: blindspot runs on cpu or cuda")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    if tensor is not None and tensor.device != dev:
        raise ValueError(
            f"the input is on {tensor.device} but the call runs on {dev}: move it (x.to({str(dev)!r})) or pass "
            f"device={str(tensor.device)!r}"
        )
    return dev


def _images(x: Any, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.float32:
        raise TypeError(f"{what} must be float32 (images in the model's box, e.g. [0, 1]), got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{what} must be a batch [N, ...example shape], got shape {list(x.shape)}")
    return x.detach()


def _classes(v: Any, what: str, n: int) -> torch.Tensor:
    t = torch.as_tensor(v)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{what} must hold integer class indices, got {t.dtype}")
    if t.shape != (n,):
        raise ValueError(f"{what} must have shape [{n}] (one per example), got {list(t.shape)}")
    return t.detach().to("cpu", torch.int64)


@dataclass(frozen=True)
class AttackResult:
    """What ``attack`` returns: one entry per example (the rows of the CLI's ``attack.csv``).

    ``adversarial`` holds the verified adversarial of each success and the original image of each failure;
    ``distortion`` (sqrt(mean((x' - x)^2)), float64, recomputed in the verification pass), ``c`` and
    ``margin`` (target logit − highest other, untargeted: highest other − label's, in the verification pass)
    are NaN where the attack failed, and ``reason`` says why ("" for a success). ``already_adversarial``
    marks successes that needed no perturbation (distortion 0), left out of ``mean_distortion``."""

    adversarial: torch.Tensor
    success: torch.Tensor
    distortion: torch.Tensor
    c: torch.Tensor
    evaluations: torch.Tensor
    iterations: torch.Tensor
    reason: List[str]
    margin: torch.Tensor
    already_adversarial: torch.Tensor
    label: torch.Tensor
    target: torch.Tensor
    seconds: float

    def __len__(self) -> int:
        return int(self.success.numel())

    @property
    def success_rate(self) -> float:
        """Fraction of examples attacked successfully."""
        return float(self.success.double().mean()) if len(self) else math.nan

    @property
    def mean_distortion(self) -> float:
        """Mean distortion over the successes that needed a perturbation (NaN when there are none), as the
        CLI's ``summary.json``."""
        d = self.distortion[self.success & ~self.already_adversarial]
        return float(d.mean()) if d.numel() else math.nan


def attack(
    model: Model,
    x: torch.Tensor,
    labels: Union[torch.Tensor, Sequence[int]],
    targets: Union[torch.Tensor, Sequence[int], None] = None,
    *,
    c_rel_tol: float = _ATTACK_DEFAULTS["c_rel_tol"],
    min_margin: float = _ATTACK_DEFAULTS["min_margin"],
    batch: int = _blindspot.DEFAULT_BATCH,
    device: Device = None,
    history: int = _ATTACK_DEFAULTS["history"],
    max_iter: int = _ATTACK_DEFAULTS["max_iter"],
    pgtol: float = _ATTACK_DEFAULTS["pgtol"],
    factr: float = _ATTACK_DEFAULTS["factr"],
    c_search: str = _ATTACK_DEFAULTS["c_search"],
    warm_start: str = _ATTACK_DEFAULTS["warm_start"],
) -> AttackResult:
    """The paper's box-constrained L-BFGS attack (§4.1) on a batch: for each example the smallest
    perturbation r (by a search over c of min c·|r| + loss(x + r, target), x + r in the box) that the model
    classifies as ``targets[i]`` — or, with ``targets=None``, as anything but ``labels[i]``.

    Args:
        model: a ``torch.jit.ScriptModule`` (scripted or traced), a path to a TorchScript file or a zoo model
            folder, or ``load_model(folder)``. Its ``forward`` maps [N, ...] images in [0, 1] (a zoo model:
            its box) to logits [N, classes].
        x: float32 [N, ...] inside the model's box, on ``device``.
        labels: the true classes [N]; targets: the target classes [N] (≠ labels), or None (untargeted).
        c_rel_tol: the c search stops when c_hi / c_lo <= 1 + c_rel_tol.
        min_margin: κ: a success needs target logit − highest other logit ≥ κ (untargeted: highest other −
            the label's ≥ κ), in the c search and in the verification; the CLI's ``--min-margin``.
        batch: examples attacked together (peak memory is proportional to it); the CLI's ``--batch``.
        device: "cpu", "cuda", "cuda:N" (default: x's device); x must be on it.
        history, max_iter, pgtol, factr: each L-BFGS-B solve's memory, iterations and tolerances.
        c_search: "secant" (root finding on the margin over log c) or "bisect" (bracket ×3, then
            geometric bisection); warm_start: "nearest", "failing" or "original" (where each solve starts).
            The CLI's ``--c-search`` and ``--warm-start``; docs/attack.md "The c search".

    Returns an ``AttackResult``; every success was verified in a fresh forward pass (inside the box,
    classified as asked). With the same model file, settings, batch and ``torch.set_num_threads`` the
    results equal ``blindspot attack``'s bit for bit on the CPU.

    Raises ``TypeError``/``ValueError`` for inputs of the wrong type, dtype, device, shape or outside the
    box, ``BlindspotError`` (the CLI's message) for what the engine refuses (e.g. a model whose output is
    not [N, classes]); Ctrl-C (``KeyboardInterrupt``) stops the attack within one forward pass.
    """
    x = _images(x, "x")
    dev = _device(device, x)
    n = x.shape[0]
    lab = _classes(labels, "labels", n)
    tg = None if targets is None else _classes(targets, "targets", n)
    settings = dict(
        _ATTACK_DEFAULTS,
        c_rel_tol=c_rel_tol,
        min_margin=min_margin,
        history=history,
        max_iter=max_iter,
        pgtol=pgtol,
        factr=factr,
        c_search=c_search,
        warm_start=warm_start,
    )
    adv, rows_json = _blindspot.attack(model_ref(model), x, lab, tg, json.dumps(settings), int(batch), str(dev))
    rows = json.loads(rows_json)

    def col(key: str, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor([math.nan if r[key] is None else r[key] for r in rows], dtype=dtype)

    return AttackResult(
        adversarial=adv,
        success=torch.tensor([bool(r["success"]) for r in rows], dtype=torch.bool),
        distortion=col("distortion", torch.float64),
        c=col("c", torch.float64),
        evaluations=col("evaluations", torch.int64),
        iterations=col("iterations", torch.int64),
        reason=[r["reason"] for r in rows],
        margin=col("margin", torch.float64),
        already_adversarial=torch.tensor([bool(r["already_adversarial"]) for r in rows], dtype=torch.bool),
        label=lab,
        target=col("target", torch.int64),
        seconds=sum(r["seconds"] for r in rows),
    )


@dataclass(frozen=True)
class LayerBound:
    """One row of the CLI's ``bounds.csv``: a layer's upper (and, where computed, lower) bound."""

    layer: str
    kind: str
    lower: Optional[float]
    upper: float
    method: str


@dataclass(frozen=True)
class SpectralResult:
    """What ``spectral`` returns: ``bounds`` (one per analysed layer, the rows of ``bounds.csv``) and
    ``report``, everything ``bounds.json`` holds (spectra, convergence records, the products, timings)."""

    bounds: List[LayerBound]
    report: Dict[str, Any] = field(repr=False)

    @property
    def product_upper(self) -> float:
        """Product of the per-layer upper bounds (convs by the guaranteed FFT bound)."""
        return float(self.report["analysis"]["product_fft_bound"])


def spectral(
    model: Model,
    input_shape: Optional[Sequence[int]] = None,
    *,
    mode: str = "both",
    layer_spec: Optional[str] = None,
    device: Device = "cpu",
    **options: Any,
) -> SpectralResult:
    """Per-layer bounds on the Lipschitz constants of the network (§4.3, Table 5), as ``blindspot spectral``.

    Args:
        model: as for ``attack``. TorchScript models need ``input_shape`` (one example's, e.g. (3, 224, 224))
            unless they are in torchvision's AlexNet layout, and ``layer_spec`` (a YAML layer spec path,
            docs/spectral.md) unless the layout is AlexNet's; zoo models have their own.
        mode: conv boundary handling: "circular" (FFT, exact), "zero" (zero padding, Lanczos) or "both".
        device: where to compute.
        options: the other fields of a ``spectral:`` stage (tol, max_iter, zero_lower, ascent_steps,
            ascent_starts, seed); unknown names raise ``ValueError``.
    """
    spec: Dict[str, Any] = {"model": "module", "mode": mode, **options}
    if input_shape is not None:
        spec["input_shape"] = [int(d) for d in input_shape]
    if layer_spec is not None:
        spec["layer_spec"] = str(layer_spec)
    dev = _device(device, None)
    report = json.loads(_blindspot.spectral(model_ref(model), json.dumps(spec), str(dev)))
    bounds = [
        LayerBound(r["layer"], r["kind"], r["lower"], math.nan if r["upper"] is None else r["upper"], r["method"])
        for r in report["analysis"]["rows"]
    ]
    return SpectralResult(bounds=bounds, report=report)


@dataclass(frozen=True)
class UnitsResult:
    """What ``units`` returns (the CLI's ``topk.csv``, ``summary.json`` and ``directions.safetensors``).

    ``top`` has one entry per direction (kind "unit", "random" or "orthogonal"; ``data``: the indices of its
    top images, best first; ``scores``). ``summary`` holds the per-kind purity/entropy estimates, the
    comparisons of units with random directions and the conclusion (with labels)."""

    top: List[Dict[str, Any]]
    summary: Dict[str, Any] = field(repr=False)
    units: List[int]
    random: torch.Tensor
    orthogonal: torch.Tensor

    def indices(self, kind: str = "unit") -> torch.Tensor:
        """Top image indices [directions of `kind`, T]."""
        return torch.tensor([t["data"] for t in self.top if t["kind"] == kind], dtype=torch.int64)

    def scores(self, kind: str = "unit") -> torch.Tensor:
        """Their scores [directions of `kind`, T]."""
        return torch.tensor([t["scores"] for t in self.top if t["kind"] == kind], dtype=torch.float32)

    @property
    def comparisons(self) -> List[Dict[str, Any]]:
        """Units vs random directions: purity and entropy differences, tests, verdicts."""
        return self.summary["comparisons"]

    @property
    def conclusion(self) -> str:
        return self.summary["conclusion"]


def units(
    model: Model,
    layer: str,
    images: torch.Tensor,
    labels: Union[torch.Tensor, Sequence[int], None] = None,
    *,
    units: Union[int, str] = 10,
    random: int = 10,
    orthogonal: bool = False,
    top: int = 8,
    seed: int = 0,
    batch: int = 256,
    bootstrap: int = 2000,
    device: Device = None,
) -> UnitsResult:
    """The units analysis of §3 (Figs 1-4): the images that most activate units of ``layer`` (natural basis
    directions) and random directions, and whether units are "purer" (with ``labels``), as ``blindspot
    units``.

    Args:
        model: as for ``attack``; ``layer`` one of its layer names (``layer_names()``).
        images: float32 [N, ...] in the model's box, on ``device`` (default: their device).
        labels: classes [N] for the purity comparison (None: top lists only).
        units: how many units (or "all"); random: random directions; orthogonal: also an orthonormal set.
        top: images kept per direction; seed; batch: images per forward pass; bootstrap: resamples.
    """
    images = _images(images, "images")
    dev = _device(device, images)
    lab = None if labels is None else _classes(labels, "labels", images.shape[0])
    spec = {
        "layer": layer,
        "data": f"tensor {list(images.shape)}",
        "units": units,
        "random": random,
        "orthogonal": orthogonal,
        "top": top,
        "seed": seed,
        "batch": batch,
        "bootstrap": bootstrap,
        "figures": None,
    }
    summary, lists, unit_idx, rnd, orth = _blindspot.units(model_ref(model), images, lab, json.dumps(spec), str(dev))
    return UnitsResult(top=json.loads(lists), summary=json.loads(summary), units=list(unit_idx), random=rnd, orthogonal=orth)
