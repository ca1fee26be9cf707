"""blindspot: the box-constrained L-BFGS attack, spectral bounds and units analysis of Szegedy et al.,
"Intriguing properties of neural networks" (ICLR 2014), for PyTorch models — the Rust engine of the
``blindspot`` CLI, called in-process on the ``torch`` you already run (docs/python.md).

    import torch, blindspot
    model = torch.jit.script(my_model.eval())           # or torch.jit.trace, a .pt path, a zoo folder
    r = blindspot.attack(model, x, labels, targets)     # x: float32 in [0, 1], on the model's device
    r.adversarial, r.success, r.distortion               # every success verified in a fresh forward pass

The extension links the libtorch of the imported ``torch`` (no copy of libtorch is shipped), so it works
only with the torch version it was built for; importing it next to another raises ``ImportError``.
"""

from __future__ import annotations

import torch  # first: loads the libtorch that the extension links

#: The torch release series this build of blindspot links (tch 0.24 = libtorch 2.11).
TORCH_SERIES = "2.11"
__version__ = "0.1.0"


def _series(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


if _series(torch.__version__) != TORCH_SERIES:
    raise ImportError(
        f"blindspot {__version__} needs torch {TORCH_SERIES}.x (it links that libtorch), but the imported "
        f"torch is {torch.__version__} ({torch.__file__}): install torch=={TORCH_SERIES}.* "
        f"(e.g. pip install torch==2.11.0) or rebuild blindspot against this torch (scripts/python.sh install)"
    )

from . import _blindspot  # noqa: E402  (after the version check: never load it next to another libtorch)

if _series(_blindspot.LIBTORCH_VERSION) != TORCH_SERIES:  # a build against another libtorch
    raise ImportError(
        f"this blindspot extension was built against libtorch {_blindspot.LIBTORCH_VERSION}, not torch "
        f"{TORCH_SERIES}.x: rebuild it (scripts/python.sh install)"
    )

from ._api import (  # noqa: E402
    AttackResult,
    BlindspotError,
    SpectralResult,
    UnitsResult,
    attack,
    load_model,
    spectral,
    units,
)


def torch_version() -> str:
    """The libtorch version this extension was built against (e.g. ``2.11.0+cpu``)."""
    return _blindspot.LIBTORCH_VERSION


__all__ = [
    "AttackResult",
    "BlindspotError",
    "SpectralResult",
    "UnitsResult",
    "attack",
    "load_model",
    "spectral",
    "units",
    "torch_version",
    "TORCH_SERIES",
]
