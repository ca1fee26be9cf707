"""Models as the engine takes them: paths, TorchScript modules and zoo modules (``load_model``)."""

import io
import json
import os
from typing import Any, List, Tuple, Union

import torch
import torch.nn.functional as F

from . import _blindspot

#: What every call accepts as a model.
Model = Union[str, "os.PathLike[str]", torch.jit.ScriptModule]


class _FlatLinear(torch.nn.Linear):
    """A zoo ``linear`` layer: flattens its input first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(1), self.weight, self.bias)


def _step(layer: dict) -> torch.nn.Module:
    k = layer["kind"]
    if k == "linear":
        return _FlatLinear(layer["in_features"], layer["out_features"])
    if k == "conv2d":
        return torch.nn.Conv2d(
            layer["in_channels"],
            layer["out_channels"],
            layer["kernel_size"],
            layer.get("stride", 1),
            layer.get("padding", 0),
        )
    if k == "sigmoid":
        return torch.nn.Sigmoid()
    if k == "relu":
        return torch.nn.ReLU()
    if k == "max_pool2d":
        return torch.nn.MaxPool2d(layer["kernel_size"], layer["stride"])
    if k == "flatten":
        return torch.nn.Flatten()
    if k == "dropout":
        return torch.nn.Dropout(layer["p"])
    raise ValueError(f"unknown zoo layer kind {k!r}")


def _output_names(layers: List[dict]) -> List[str]:
    """The zoo's layer names (as ``blindspot units --layer`` takes them): a parameterised layer's own
    name, others ``<previous name>.<kind>``."""
    last, names = "input", []
    for layer in layers:
        if "name" in layer:
            last = layer["name"]
            names.append(last)
        else:
            names.append(f"{last}.{layer['kind']}")
    return names


class ZooNet(torch.nn.Module):
    """A zoo model (``model.json`` + ``weights.safetensors``) as a TorchScript-able module that follows the
    layer protocol (``layer_names()``, ``layer(x, name)``, ``input_shape()``). ``blindspot_record`` holds
    ``model.json``; the engine rebuilds the zoo model from it and the module's parameters."""

    blindspot_record: str
    blindspot_origin: str

    def __init__(self, record: dict, origin: str):
        super().__init__()
        arch = record["architecture"]
        self.steps = torch.nn.ModuleList([_step(layer) for layer in arch["layers"]])
        self.names: List[str] = _output_names(arch["layers"])
        self.shape: List[int] = list(arch["input_shape"])
        self.blindspot_record = json.dumps(record)
        self.blindspot_origin = origin
        # The zoo names of the parameters, in the order of self.parameters().
        self.blindspot_params: List[str] = [
            f"{layer['name']}.{p}" for layer in arch["layers"] if "name" in layer for p in ("weight", "bias")
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x

    @torch.jit.export
    def layer_names(self) -> List[str]:
        return self.names + ["logits"]

    @torch.jit.export
    def layer(self, x: torch.Tensor, name: str) -> torch.Tensor:
        for i, step in enumerate(self.steps):
            x = step(x)
            if self.names[i] == name:
                return x
        if name == "logits":
            return x
        raise ValueError("unknown layer " + name)

    @torch.jit.export
    def input_shape(self) -> List[int]:
        return self.shape


def load_model(path: Union[str, "os.PathLike[str]"], device: Union[str, torch.device] = "cpu") -> torch.jit.ScriptModule:
    """Loads a zoo model folder (``model.json`` + ``weights.safetensors``, checked as the CLI checks them)
    as a scripted ``torch.nn.Module`` in eval mode on ``device``: logits of images in [0, 1], with the layer
    protocol (``layer_names()``, ``layer(x, name)``, ``input_shape()``). ``attack``, ``spectral`` and
    ``units`` take it directly (the engine runs the zoo model of its record and current parameters)."""
    record_json, params = _blindspot.read_zoo(os.fspath(path))
    net = ZooNet(json.loads(record_json), os.fspath(path))
    named = dict(params)
    with torch.no_grad():
        for name, p in zip(net.blindspot_params, net.parameters()):
            p.copy_(named[name])
    return torch.jit.script(net.eval().to(device))


def _is_zoo(model: Any) -> bool:
    return isinstance(model, torch.jit.ScriptModule) and hasattr(model, "blindspot_record")


def model_ref(model: Any) -> Tuple[Any, ...]:
    """The tuple the extension reads (python/src/model.rs)."""
    if isinstance(model, (str, os.PathLike)):
        return ("path", os.fspath(model))
    if _is_zoo(model):
        params = [(n, p.detach()) for n, p in zip(model.blindspot_params, model.parameters())]
        return ("zoo", model.blindspot_record, params, model.blindspot_origin)
    if isinstance(model, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(model, buf)
        return ("script", buf.getvalue(), getattr(model, "original_name", "module"))
    if isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model is a {type(model).__name__} (an eager torch.nn.Module): blindspot runs TorchScript; pass "
            "torch.jit.script(model.eval()) or torch.jit.trace(model.eval(), example)"
        )
    raise TypeError(
        f"model must be a torch.jit.ScriptModule, a path (zoo folder or .pt file) or blindspot.load_model(...), "
        f"got {type(model).__name__}"
    )

