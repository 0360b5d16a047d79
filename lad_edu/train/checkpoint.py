"""Checkpoints that survive interruption: written atomically, read back with ``weights_only=True``.

A checkpoint is a dict of tensors and plain values only (``model``, ``optimizer``, ``scheduler``,
``scaler`` state dicts, ``epoch``, ``iter``, the resolved ``config`` as nested dicts, ...), so the safe
loader can read it: nothing in it can run code when loaded.

Every read of a run's checkpoint (``--resume``, ``lad-edu eval``, ``lad-edu assign``, a LAD teacher) goes
through :func:`load_run_checkpoint`, which refuses what does not fit with the reason: a bare state dict
or an MMDetection file where a run is expected, or a run trained on other categories than the data's
(:func:`check_category_ids`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from lad_edu.atomic import atomic_open
from lad_edu.train.config import ConfigError

__all__ = [
    "RUN_KEYS",
    "CheckpointError",
    "check_category_ids",
    "check_run_checkpoint",
    "is_run_checkpoint",
    "load_checkpoint",
    "load_run_checkpoint",
    "load_run_detector",
    "save_checkpoint",
]

# what every checkpoint written by ``lad-edu train`` holds (CoLAD's also holds ``partner``)
RUN_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "iter", "config", "category_ids")
# how many category ids an error message lists before it says "... (N in all)"
MAX_IDS_SHOWN = 12


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing or cannot be read; the message names the file."""


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives during the block, and raise its KeyboardInterrupt at the end.

    Interrupted midway, ``torch.save`` turns the KeyboardInterrupt into a ``RuntimeError`` ("unexpected
    pos") as it closes its zip file; deferred, the checkpoint is finished and the interrupt is seen as one.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: to a temporary file beside it, then ``os.replace``.

    A crash while writing leaves the previous checkpoint intact, never half a file; a Ctrl-C waits until
    the new one is written.
    """
    path = Path(path)
    with _ctrl_c_deferred(), atomic_open(path, "wb") as f:
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


def is_run_checkpoint(state: Mapping) -> bool:
    """Whether ``state`` claims to be a lad_edu run (it has a ``config``), complete or not."""
    return "config" in state


def _not_a_run(state: Mapping, path: Path) -> str:
    """Why ``state`` is not a run checkpoint, and what it can be used for instead."""
    if "state_dict" in state:
        what = "an MMDetection checkpoint ('state_dict', 'meta')"
    elif state and all(isinstance(value, Tensor) for value in state.values()):
        what = f"a bare state dict ({len(state)} tensors, no 'config' or 'category_ids')"
    else:
        missing = [key for key in RUN_KEYS if key not in state]
        return f"checkpoint {path} is not a complete lad-edu run: it lacks {missing}"
    return (
        f"checkpoint {path} is {what}, not a lad-edu run checkpoint; --resume and eval need the "
        "RUN_DIR/checkpoint.pt that lad-edu train writes; weights alone can serve as "
        "distill.teacher_checkpoint"
    )


def load_run_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by ``lad-edu train``, read safely and checked to hold :data:`RUN_KEYS`.

    Raises:
        CheckpointError: the file is missing or unreadable, or holds something else (a bare state dict,
            an MMDetection file): the message says which and what it can be used for.
    """
    state = load_checkpoint(path, map_location)
    check_run_checkpoint(state, path)
    return state


def check_run_checkpoint(state: Mapping, path: str | Path) -> None:
    """Refuse a ``state`` read from ``path`` that is not a complete run (see :func:`load_run_checkpoint`)."""
    if not all(key in state for key in RUN_KEYS):
        raise CheckpointError(_not_a_run(state, Path(path)))
    if state["config"].get("distill", {}).get("mode") == "colad" and "partner" not in state:
        raise CheckpointError(f"checkpoint {path} is a CoLAD run without its second network ('partner')")


def _shown(ids: Sequence[int]) -> str:
    ids = list(ids)
    more = f" ... ({len(ids)} in all)" if len(ids) > MAX_IDS_SHOWN else ""
    return f"[{', '.join(map(str, ids[:MAX_IDS_SHOWN]))}{more}]"


def check_category_ids(trained: Sequence[int], data: Sequence[int], what: str, data_what: str) -> None:
    """Refuse a network trained on other categories than the data's: its labels would mean other classes.

    Raises:
        ConfigError: naming ``what`` (the checkpoint), ``data_what`` (the data) and both id lists.
    """
    if list(trained) != list(data):
        raise ConfigError(
            f"{what} was trained on category ids {_shown(trained)}, {data_what} has {_shown(data)}; "
            "a detector's labels only mean something on the categories it was trained on"
        )


def load_run_detector(path: str | Path, overrides: Sequence[str] = (), *, partner: bool = False):
    """A run checkpoint's config (with ``overrides``), the checkpoint, and its trained network.

    Args:
        partner: CoLAD's network 2 instead of network 1.

    Returns:
        ``(cfg, state, detector)``: the :class:`~lad_edu.train.config.TrainConfig`, the checkpoint's dict
        (:func:`load_run_checkpoint`), and the detector with the weights loaded strictly (fp16 weights
        load into the fp32 network).

    Raises:
        CheckpointError: not a complete run; ``partner`` asked of a run without a second network.
    """
    from lad_edu.model import build_detector
    from lad_edu.model.checkpoint import load_strict
    from lad_edu.train.config import other_network, override_config

    state = load_run_checkpoint(path)
    cfg = override_config(state["config"], overrides)
    if partner and "partner" not in state:
        raise CheckpointError(f"checkpoint {path} has no second network (partner=True is for CoLAD runs)")
    model = other_network(cfg, imagenet=False) if partner else cfg.model
    detector = build_detector(model, len(state["category_ids"]))
    load_strict(
        detector, state["partner" if partner else "model"], f"{path}{' (partner)' if partner else ''}"
    )
    return cfg, state, detector
