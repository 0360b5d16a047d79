"""The run directory: nothing in it lost, nothing overwritten by accident.

* :func:`prepare_run_dir`: a directory that already holds a run is continued (``resume``) or replaced
  (``overwrite``) only when asked; a second ``train`` never silently replaces the teacher another
  config reads.
* :class:`RunLock`: ``RUN_DIR/.lock`` names the process that writes the directory, so two trainings
  cannot both write into one; a lock left by a killed process is taken over.
* :func:`truncate_metrics`: a resumed run trains again what came after its checkpoint, so the rows
  ``metrics.jsonl`` (and ``snapshots.jsonl``) hold for those iterations are dropped first (no duplicates).
* :func:`strict_json`: the one way a row of those files is written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import warnings
from datetime import datetime
from pathlib import Path

from lad_edu.atomic import atomic_open

__all__ = [
    "RUN_FILES",
    "RUN_OUTPUTS",
    "RunDirError",
    "RunLock",
    "prepare_run_dir",
    "strict_json",
    "truncate_metrics",
]

RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "config.yaml")  # any of them: the directory holds a run
# all a run writes: what overwrite removes
RUN_OUTPUTS = (*RUN_FILES, "eval", "eval_partner", "tensorboard", "snapshots.jsonl")


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked; the message names it and what to do."""


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Check that ``run_dir`` may be trained into as asked; with ``overwrite``, remove the old run's files.

    Raises:
        RunDirError: ``run_dir`` holds a run and neither flag is given, or ``resume`` finds no checkpoint.
    """
    if resume and overwrite:
        raise RunDirError(
            f"--resume continues the run in {run_dir}, --overwrite deletes it: give one of them"
        )
    found = [name for name in RUN_FILES if (run_dir / name).exists()]
    checkpoint = run_dir / "checkpoint.pt"
    if resume and not checkpoint.is_file():
        fix = "start afresh with --overwrite" if found else "start a new run without --resume"
        raise RunDirError(f"cannot resume: {checkpoint} does not exist; {fix}")
    if found and not (resume or overwrite):
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(found)}); continue it with --resume "
            "or replace it with --overwrite (in Python: resume=True / overwrite=True)"
        )
    if overwrite:
        for name in RUN_OUTPUTS:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to another user
        return True
    return True


class RunLock:
    """``RUN_DIR/.lock`` while a training writes ``RUN_DIR``: ``{"pid", "host", "started"}`` as JSON.

    The file is created with ``O_CREAT | O_EXCL``, which fails when it exists: of two processes, one
    creates it and the other is refused with the holder's pid. A lock whose process no longer runs on
    this host (``kill -9``, a power cut) is taken over with a warning. Removed on exit, also on errors.
    ``enabled=False`` (ranks other than 0) makes it do nothing.
    """

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.path, self.enabled = Path(run_dir) / ".lock", enabled

    def __enter__(self) -> RunLock:
        if self.enabled:
            self._acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.enabled:
            self.path.unlink(missing_ok=True)

    def _acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now().isoformat()}
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()  # raises while the holder runs
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(holder, f)
            return

    def _take_over_if_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, host, started = holder["pid"], holder["host"], holder["started"]
        except FileNotFoundError:  # released in the meantime: try again
            return
        except (ValueError, KeyError, TypeError):  # being written this instant, or damaged
            raise RunDirError(
                f"{self.path} exists but cannot be read; if no training writes {self.path.parent}, delete it"
            ) from None
        if host != socket.gethostname() or _running(pid):
            raise RunDirError(
                f"{self.path.parent} is being written by process {pid} on {host} (since {started}); "
                f"wait for it to finish, or if that process is gone, delete the lock file {self.path}"
            )
        warnings.warn(
            f"taking over {self.path}: process {pid}, which held it since {started}, no longer runs",
            stacklevel=4,
        )
        self.path.unlink(missing_ok=True)


def _written_after(line: str) -> tuple[int, int] | None:
    """The (epoch, iteration) a metrics row was written after; None for a line cut short by a kill."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    if row["kind"] == "train":
        return row["epoch"] - 1, row["iter"]  # train rows count epochs from 1, iterations done in it
    return row["epoch"], 0  # eval rows: after `epoch` complete epochs


def truncate_metrics(path: Path, epoch: int, iteration: int) -> None:
    """Keep the rows of ``metrics.jsonl`` written up to the checkpoint at ``(epoch, iteration)``.

    Also for ``snapshots.jsonl``: a row of any other ``kind`` than ``"train"`` was written after ``epoch``
    complete epochs.

    The file is rewritten atomically: a kill during the rewrite leaves the old file, never half of one.
    """
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if (at := _written_after(line)) is not None and at <= (epoch, iteration)]
    if len(kept) < len(lines):
        with atomic_open(path) as f:
            f.writelines(line + "\n" for line in kept)


def strict_json(record: dict, significant: int | None = None) -> str:
    """``record`` as one line of strict JSON: a non-finite number (a rate with nothing to count) is null.

    ``json.dumps`` writes ``NaN`` and ``Infinity`` by default, which JSON does not have (many readers
    refuse them); COCOeval's ``-1`` ("nothing to measure") is finite and stays. Nested dicts and lists are
    written the same way; with ``significant``, every float is rounded to that many significant digits.

    >>> strict_json({"AP": -1.0, "pos_iou": float("nan")})
    '{"AP": -1.0, "pos_iou": null}'
    >>> strict_json({"costs": [0.123456789, float("inf")]}, significant=5)
    '{"costs": [0.12346, null]}'
    """

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, float):
            if not math.isfinite(value):
                return None
            return value if significant is None else float(f"{value:.{significant}g}")
        return value

    return json.dumps(plain(record), allow_nan=False)
