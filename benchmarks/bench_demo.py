"""Time the default comparison end to end: what ``make demo`` runs, ``lad-edu compare`` with its defaults.

    python -m benchmarks.bench_demo [any option of lad-edu compare: --epochs N --set key=value ...] [--keep]

Runs :func:`lad_edu.compare.run_compare` as ``lad-edu compare`` does (the classroom data is written first
if missing, as on a first ``make demo``), into a fresh temporary ``--out`` unless one is given (a given
``--out`` reuses its finished runs, and then the time is not the demo's), and prints:

* wall time: from the start to the written report (training, labelling, figures);
* peak memory of the whole process tree (this process, the training workers, their data-loader processes),
  two ways:

  - sampled: every 0.5 s, the sum of the proportional set sizes (``Pss`` of ``/proc/PID/smaps_rollup``:
    a page shared by ``n`` processes counts ``1/n`` in each) of every process of the tree; the peak of
    these sums. What the tree really holds (Linux only; a peak shorter than 0.5 s can be missed).
  - bound: the parent's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) plus ``jobs`` times
    the largest peak of a child (``RUSAGE_CHILDREN``, counted once the children have ended). At most
    ``jobs`` workers train at once, so this bounds the peak from above, loosely: every process counts in
    full the pages it shares, and ``import torch`` alone maps ~0.6 GiB of shared libraries.

against the targets: at most 10 minutes and 4 GiB (the sampled peak where there is one, else the bound)
on a 2-core laptop. ``--keep`` keeps the temporary report.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from lad_edu.compare import add_compare_arguments, resolve_jobs, run_compare

TARGET_MINUTES = 10.0
TARGET_GIB = 4.0
KIB_PER_GIB = 1024**2  # ru_maxrss is in KiB on Linux


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_compare_arguments(parser)
    parser.add_argument("--keep", action="store_true", help="keep the temporary report directory")
    parser.set_defaults(out=None)  # a fresh temporary directory: nothing is reused
    return parser.parse_args(argv)


def peak_memory_gib(jobs: int) -> dict[str, float]:
    """The parent's and the largest child's peak RSS, and the bound ``parent + jobs x child`` (GiB)."""
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_GIB
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / KIB_PER_GIB
    return {"parent": parent, "largest child": child, "bound": parent + jobs * child}


def _parents() -> dict[int, int]:
    """``{pid: parent pid}`` of every process (``/proc/PID/stat``'s fourth field)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
    return parents


def tree_pss_gib(root: int) -> float:
    """The summed ``Pss`` of process ``root`` and all its descendants, in GiB."""
    parents, tree = _parents(), {root}
    while grown := {pid for pid, parent in parents.items() if parent in tree} - tree:
        tree |= grown
    total_kib = 0
    for pid in tree:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total_kib += sum(int(line.split()[1]) for line in lines if line.startswith("Pss:"))
    return total_kib / KIB_PER_GIB


class PeakSampler(threading.Thread):
    """Samples :func:`tree_pss_gib` of this process every ``interval`` seconds until stopped; ``peak``."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.peak, self.stopped = interval, None, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.peak = max(self.peak or 0.0, tree_pss_gib(os.getpid()))

    def stop(self) -> float | None:
        self.stopped.set()
        self.join()
        return self.peak


def print_table(minutes: float, memory: dict[str, float | None], jobs: int) -> None:
    peak = memory["sampled"] if memory["sampled"] is not None else memory["bound"]
    how = "sampled Pss of the tree" if memory["sampled"] is not None else f"parent + {jobs} x child"
    rows = [
        ("wall time", f"{minutes:.1f} min", f"<= {TARGET_MINUTES:g} min", minutes <= TARGET_MINUTES),
        (f"peak memory ({how})", f"{peak:.2f} GiB", f"<= {TARGET_GIB:g} GiB", peak <= TARGET_GIB),
    ]
    print("| measure | measured | target | met |\n|---|---|---|---|")
    for name, value, target, met in rows:
        print(f"| {name} | {value} | {target} | {'yes' if met else 'NO'} |")
    print(
        f"(getrusage: parent peak {memory['parent']:.2f} GiB, largest child peak "
        f"{memory['largest child']:.2f} GiB, bound parent + {jobs} x child {memory['bound']:.2f} GiB)"
    )


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison, print the table; returns ``{"minutes", "memory_gib", "report"}``, the memory as
    ``{"sampled", "parent", "largest child", "bound"}``."""
    args = parse_args(argv)
    temporary = args.out is None
    if temporary:
        args.out = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    jobs = resolve_jobs(args.jobs)
    sampler = PeakSampler() if Path("/proc/self/smaps_rollup").is_file() else None
    if sampler is not None:
        sampler.start()
    start = time.perf_counter()
    try:
        report = run_compare(args)
    finally:
        sampled = sampler.stop() if sampler is not None else None
        if temporary and not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)
            print(f"(the report in {args.out} was removed; --keep keeps it)")
    minutes = (time.perf_counter() - start) / 60
    memory = peak_memory_gib(jobs) | {"sampled": sampled}
    print_table(minutes, memory, jobs)
    return {"minutes": minutes, "memory_gib": memory, "report": report}


if __name__ == "__main__":
    main(sys.argv[1:])
