"""Training the runs of a comparison: worker processes, a LAD-family run started when its teacher is done,
one progress bar over all runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from lad_edu.compare.plan import HOW, RunSpec, read_marker, write_marker
from lad_edu.train.config import TrainConfig
from lad_edu.train.distributed import Dist
from lad_edu.train.metrics import read_metrics

POLL_SECONDS = 2.0  # how often the progress bar reads the running runs' metrics


class RunFailedError(RuntimeError):
    """A run of the comparison failed; the message names it, the error, and its log."""


# one run, in a worker process


_CTRL_C = {"handler": signal.default_int_handler}  # in a worker: what Ctrl-C does during a run


def _start_worker() -> None:
    """A worker process computes on one thread (``jobs`` runs share the cores without oversubscribing) and
    ignores Ctrl-C while it waits for a run: only a run is interrupted, and it writes its checkpoint."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # also for its loader workers
    torch.set_num_threads(1)
    _CTRL_C["handler"] = signal.signal(signal.SIGINT, signal.SIG_IGN)


def _last_eval_epoch(run_dir: Path) -> int | None:
    rows = read_metrics(run_dir, "eval")
    epochs = [row["epoch"] for row in rows if "network" not in row]
    return epochs[-1] if epochs else None


def _evaluate_checkpoint(cfg: TrainConfig, run_dir: Path) -> None:
    """Evaluate the run's checkpoint (an ``"eval"`` row and ``eval/``): a run killed during its final
    evaluation has a finished checkpoint, which ``train(resume=True)`` does not evaluate again."""
    from lad_edu.train.distributed import init_distributed
    from lad_edu.train.engine import MetricsLog, build_run, evaluate, restore_run_state
    from lad_edu.train.run_dir import RunLock

    with RunLock(run_dir):
        run = build_run(cfg, run_dir, init_distributed(cfg.device))
        restore_run_state(run)
        with MetricsLog(run_dir, enabled=True) as log:
            evaluate(run, log)


def _train_run(spec: RunSpec, state: str) -> dict:
    """Train ``spec`` as ``state`` says, in a worker process (:func:`_train_and_time`).

    Ctrl-C stops the run after the engine wrote a checkpoint of where it was; its ``RunInterrupted`` goes
    back to the parent, which stops the comparison.
    """
    signal.signal(signal.SIGINT, _CTRL_C["handler"])
    try:
        return _train_and_time(spec, state)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _train_and_time(spec: RunSpec, state: str) -> dict:
    """Train ``spec``, its output into ``run_dir/train.log``; evaluate its checkpoint if the last
    evaluation is missing. Returns its ``compare.json``: ``{"train_seconds", "finished": True}``.
    """
    from lad_edu.train import train

    spec.run_dir.mkdir(parents=True, exist_ok=True)
    before = read_marker(spec.run_dir)["train_seconds"] if state == "resume" else 0.0
    write_marker(spec.run_dir, before, finished=False)  # until train() returns, whatever was there before
    start, result = time.perf_counter(), None
    try:
        with (
            open(spec.run_dir / "train.log", "a") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            print(f"== lad-edu compare: {state} {spec.key}, {datetime.now().isoformat(timespec='seconds')}")
            result = train(spec.cfg, spec.run_dir, resume=state == "resume", overwrite=state == "restart")
            if _last_eval_epoch(spec.run_dir) != result["epoch"]:
                _evaluate_checkpoint(spec.cfg, spec.run_dir)
    finally:  # this session's time counts, also when it was interrupted (then the run is not finished)
        if result is not None and result["already_finished"]:  # trained elsewhere: its time is unknown here
            seconds = before
        else:
            seconds = (before or 0.0) + time.perf_counter() - start
        marker = write_marker(spec.run_dir, seconds, finished=result is not None)
    return marker


# the scheduler: a process pool that starts a run when its teacher is done


def _trained_iters(run_dir: Path) -> int:
    """The ``global_iter`` of the last ``"train"`` row of ``run_dir/metrics.jsonl`` (read from its end)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if row.get("kind") == "train":
                return int(row["global_iter"])
    return 0


def _iterations(spec: RunSpec, iters_per_epoch: int) -> int:
    """The iterations a whole run trains (``max_iters`` stops it sooner)."""
    total = spec.cfg.optim.epochs * iters_per_epoch
    return total if spec.cfg.max_iters is None else min(total, spec.cfg.max_iters)


class Progress:
    """One bar over the iterations of every run, and a line per finished run.

    Args:
        specs: all runs; states: their :func:`run_state`; iters_per_epoch: of the training data.
        enabled: show the bar (the lines are printed either way).
    """

    def __init__(self, specs: Sequence[RunSpec], states: dict[str, str], iters_per_epoch: int, enabled: bool):
        self.totals = {spec.key: _iterations(spec, iters_per_epoch) for spec in specs}
        self.done = {spec.key: self._trained(spec, states[spec.key]) for spec in specs}
        self.bar = tqdm(
            total=sum(self.totals.values()),
            initial=sum(self.done.values()),
            unit="it",
            desc="compare",
            disable=not enabled,
            dynamic_ncols=True,
        )

    def _trained(self, spec: RunSpec, state: str) -> int:
        """Iterations of ``spec`` already trained: all when finished, up to its last row when resumed."""
        if state == "finished":
            return self.totals[spec.key]
        if state == "resume":
            return min(self.totals[spec.key], _trained_iters(spec.run_dir))
        return 0

    def poll(self, running: Sequence[RunSpec]) -> None:
        """Read how far the running runs are."""
        for spec in running:
            self.done[spec.key] = self._trained(spec, "resume")
        self.bar.update(sum(self.done.values()) - self.bar.n)

    def finished(self, spec: RunSpec, marker: dict, state: str) -> None:
        """Count ``spec`` as done, and print its line: strategy, seed, AP, minutes, how (:data:`HOW`)."""
        self.done[spec.key] = self.totals[spec.key]
        self.bar.update(sum(self.done.values()) - self.bar.n)
        stats = json.loads((spec.run_dir / "eval" / "coco_stats.json").read_text())
        seconds = marker["train_seconds"]
        took = "" if seconds is None else f" in {seconds / 60:.1f} min"
        self.bar.write(
            f"{spec.strategy:>8} seed {spec.seed}: AP {100 * stats['AP']:5.1f}{took} ({HOW[state]})"
        )

    def close(self) -> None:
        self.bar.close()


def _failure(spec: RunSpec, error: BaseException) -> str:
    return f"{spec.key}: {type(error).__name__}: {error} (its log: {spec.run_dir / 'train.log'})"


def train_runs(
    specs: Sequence[RunSpec], states: dict[str, str], *, jobs: int, progress: Progress
) -> dict[str, dict]:
    """Train every run that is not ``"finished"``, ``jobs`` at a time, each when its teacher is done.

    Returns:
        ``{key: compare.json of the run}`` for every run.

    Raises:
        RunFailedError: after the other runs ended, naming every run that failed (and those that could not
            start because their teacher failed). A rerun resumes them.
    """
    markers = {spec.key: read_marker(spec.run_dir) for spec in specs if states[spec.key] == "finished"}
    waiting = [spec for spec in specs if spec.key not in markers]
    failures: list[str] = []
    context = get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker) as pool:
        running: dict[Future, RunSpec] = {}
        while waiting or running:
            for spec in [s for s in waiting if s.teacher is None or s.teacher in markers]:
                if len(running) < jobs:
                    waiting.remove(spec)
                    running[pool.submit(_train_run, spec, states[spec.key])] = spec
            if not running:  # what is left waits for a teacher that failed
                failures += [
                    f"{spec.key}: not started, its teacher {spec.teacher} failed" for spec in waiting
                ]
                break
            done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                spec = running.pop(future)
                try:
                    markers[spec.key] = future.result()
                except Exception as error:  # the run's own error, re-raised from its process
                    failures.append(_failure(spec, error))
                else:
                    progress.finished(spec, markers[spec.key], states[spec.key])
            progress.poll(list(running.values()))
    if failures:
        raise RunFailedError(f"{len(failures)} run(s) failed: " + "; ".join(failures))
    return markers


def resolve_jobs(jobs: int | str) -> int:
    """``"auto"``: the cores this process may use; else a positive number."""
    if jobs == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if int(jobs) < 1:
        raise ValueError(f"--jobs must be 'auto' or at least 1, got {jobs}")
    return int(jobs)


def train_all(
    specs: Sequence[RunSpec], states: dict[str, str], train_set, *, jobs: int, progress: bool
) -> dict[str, dict]:
    """Train what is not finished, under one progress bar; a line per run (the reused ones first)."""
    from lad_edu.train.data import train_loader

    cfg = specs[0].cfg
    loader = train_loader(train_set, cfg.data, cfg.seed, Dist(0, 1, torch.device("cpu")))
    bar = Progress(specs, states, loader.batch_sampler.batches_per_epoch, progress)
    try:
        for spec in specs:
            if states[spec.key] == "finished":
                bar.finished(spec, read_marker(spec.run_dir), "finished")
        return train_runs(specs, states, jobs=jobs, progress=bar)
    finally:
        bar.close()
