"""Reading state dicts from disk and loading them strictly, with errors that say what does not fit.

MMDetection's LAD teacher loads with ``strict=False``, so a wrong checkpoint loads silently. Every load
in lad_edu goes through :func:`load_strict`: a missing or unexpected key is an error that names the keys
and where the weights came from.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["read_state_dict", "unwrap_state_dict", "load_strict"]

# how many key names an error message lists before it says "... and N more"
MAX_KEYS_SHOWN = 10


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a ``.pth`` file with ``torch.load(weights_only=True)`` and return its state dict.

    A model-zoo file ``{"meta": ..., "state_dict": {...}}`` is unwrapped; a bare state dict is returned
    as it is.

    Raises:
        FileNotFoundError: naming the path, when there is no such file.
        ValueError: naming the path, when the file does not hold a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path} (lad_edu never downloads: pass a local .pth)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds objects other than tensors and plain containers; if you trust the file, load it "
            f"with torch.load(path, weights_only=False) and pass the resulting dict instead ({error})"
        ) from error
    return unwrap_state_dict(checkpoint, source=str(path))


def unwrap_state_dict(checkpoint: Mapping, source: str = "checkpoint") -> dict[str, Tensor]:
    """The state dict inside ``{"state_dict": ...}`` (MMDetection's zoo files), or ``checkpoint`` itself."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{source} is a {type(checkpoint).__name__}, not a state dict")
    state_dict = checkpoint.get("state_dict", checkpoint)
    if not all(isinstance(value, Tensor) for value in state_dict.values()):
        raise ValueError(f"{source} is not a state dict: some values are not tensors")
    return dict(state_dict)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_SHOWN])
    return shown + (f" ... and {len(keys) - MAX_KEYS_SHOWN} more" if len(keys) > MAX_KEYS_SHOWN else "")


def load_strict(module: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with an error naming ``source`` and the keys.

    Raises:
        ValueError: listing the missing and the unexpected keys, or the tensors whose shapes differ.
    """
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit {type(module).__name__}: "
            f"{len(missing)} missing keys [{_listed(missing)}], "
            f"{len(unexpected)} unexpected keys [{_listed(unexpected)}]"
        )
    wrong_shape = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if state_dict[key].shape != value.shape
    ]
    if wrong_shape:
        raise ValueError(
            f"{source} does not fit {type(module).__name__}: shapes differ for [{_listed(wrong_shape)}]"
        )
    module.load_state_dict(state_dict, strict=True)
