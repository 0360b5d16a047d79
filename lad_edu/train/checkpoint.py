"""Checkpoints that survive interruption: written atomically, read back with ``weights_only=True``.

A checkpoint is a dict of tensors and plain values only (``model``, ``optimizer``, ``scheduler``,
``scaler`` state dicts, ``epoch``, ``iter``, the resolved ``config`` as nested dicts, ...), so the safe
loader can read it: nothing in it can run code when loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lad_edu.atomic import atomic_open

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing or cannot be read; the message names the file."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: to a temporary file beside it, then ``os.replace``.

    A crash or Ctrl-C while writing leaves the previous checkpoint intact, never half a file.
    """
    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``torch.load(..., weights_only=True)``.

    Raises:
        CheckpointError: the file is missing, truncated, or holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state
