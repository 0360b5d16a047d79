"""``lad-edu compare`` and :func:`compare`: plan, train, measure, report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from lad_edu.atomic import atomic_open
from lad_edu.compare.measure import collect_run, label_runs, size_bins, summarize, validation_batches
from lad_edu.compare.plan import (
    DEFAULT_STRATEGIES,
    STRATEGIES,
    load_data,
    plan_runs,
    run_state,
    strategy_names,
)
from lad_edu.compare.report import markdown, tables, write_figures
from lad_edu.compare.runner import resolve_jobs, train_all
from lad_edu.train.config import load_config


def compare(
    *,
    data: str | Path | None = None,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    seeds: int = 1,
    epochs: int | None = None,
    config: str = "classroom_compare",
    overrides: Sequence[str] = (),
    out: str | Path = "runs/compare",
    jobs: int | str = "auto",
    overwrite: bool = False,
    size_images: int = 100,
    progress: bool = True,
    teacher: str | Path | None = None,
) -> dict:
    """Train ``strategies`` x ``seeds`` on one base config and write the report (see the module docstring).

    Args:
        data: a COCO-layout dataset root (default: the config's ``data.root``).
        strategies: names of the module table (or of :data:`lad_edu.assign.ASSIGNERS`).
        seeds: seeds ``0 .. seeds-1`` for every strategy.
        epochs: ``optim.epochs``, milestones scaled (default: the config's schedule).
        config: the base config, a shipped name or a YAML path; overrides: ``key=value`` for every run.
        out: the report directory; its runs are reused or resumed when their config matches.
        jobs: runs trained at once (``"auto"``: one per core).
        overwrite: train again the runs in ``out`` whose config differs (else an error).
        size_images: validation images labelled for positives per GT by size.
        progress: show the progress bars (the line per finished run is printed either way).
        teacher: the LAD family's teacher, a run checkpoint (say, a smaller network's: the paper's Table 3),
            instead of the ``paa`` run of the same seed.

    Returns:
        The report, as written to ``out/results.json``.

    Raises:
        ValueError / ConfigError: a bad strategy, data or override, each in one line that names it.
        RunDirError: a run directory of ``out`` holds another config (without ``overwrite``).
        RunFailedError: a run failed (the others ran to their end; a rerun resumes).
    """
    out = Path(out)
    sets = [f"data.root={json.dumps(str(data))}", *overrides] if data is not None else list(overrides)
    specs = plan_runs(
        config=config,
        overrides=sets,
        strategies=strategies,
        seeds=seeds,
        epochs=epochs,
        out=out,
        teacher=teacher,
    )
    train_set, val_set = load_data(specs[0].cfg)
    states = {spec.key: run_state(spec, overwrite) for spec in specs}  # every refusal before any training
    markers = train_all(specs, states, train_set, jobs=resolve_jobs(jobs), progress=progress)

    cfg = specs[0].cfg
    batches = validation_batches(cfg, val_set, size_images)
    bins = size_bins(cfg.model, batches)
    by_size, picture = label_runs(specs, batches, bins, progress)
    settings = {
        "config": config,
        "overrides": list(overrides),
        "data": cfg.data.root,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "strategies": strategy_names(strategies, teacher),
        "teacher": None if teacher is None else str(teacher),
        "seeds": list(range(seeds)),
        "epochs": cfg.optim.epochs,
        "milestones": list(cfg.optim.milestones),
        "strides": list(cfg.model.strides),
        "size_images": sum(len(targets) for _, targets in batches),
    }
    report = {"settings": settings, "size_bins": bins, "strategies": {}}
    for name in settings["strategies"]:
        runs = [
            collect_run(s, markers[s.key], states[s.key], by_size[s.key]) for s in specs if s.strategy == name
        ]
        report["strategies"][name] = {"summary": summarize(runs), "runs": runs}
    report["figures"] = write_figures(report, picture, out)
    with atomic_open(out / "results.json") as f:
        json.dump(report, f, indent=1)
    with atomic_open(out / "results.md") as f:
        f.write(markdown(report))
    return report


# the command line: `lad-edu compare`


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lad-edu compare`` (and of ``benchmarks/bench_demo.py``)."""
    parser.add_argument(
        "--data", type=Path, default=None, help="COCO-layout dataset root (default: the config's)"
    )
    parser.add_argument(
        "--strategies",
        default=",".join(DEFAULT_STRATEGIES),
        help=f"comma-separated (default {','.join(DEFAULT_STRATEGIES)}); any of {', '.join(STRATEGIES)}",
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="seeds 0..SEEDS-1 for every strategy (default 1)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs, lr steps scaled (default: config's)"
    )
    parser.add_argument(
        "--config", default="classroom_compare", help="base config (default classroom_compare)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field of every run"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="report directory")
    parser.add_argument("--jobs", default="auto", help="runs trained at once (default auto: one per core)")
    parser.add_argument(
        "--overwrite", action="store_true", help="train again runs in --out of another config"
    )
    parser.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="teacher of soft / lad / solad: a run checkpoint (default: the paa run of the same seed)",
    )


def run_compare(args: argparse.Namespace) -> dict:
    """``lad-edu compare``: :func:`compare` with the parsed options; prints the tables, where the report and
    its figures are, and what to do next."""
    from lad_edu.data.classroom import data_root

    if args.data is None:  # the default classroom data is written on first use, as for `lad-edu train`
        data_root(None, load_config(args.config, args.set).data.root)
    report = compare(
        data=args.data,
        strategies=[name.strip() for name in args.strategies.split(",") if name.strip()],
        seeds=args.seeds,
        epochs=args.epochs,
        config=args.config,
        overrides=args.set,
        out=args.out,
        jobs=args.jobs,
        overwrite=args.overwrite,
        teacher=args.teacher,
    )
    figures = "\n".join(f"  {args.out / path}" for path in report["figures"].values())
    print(
        "\n".join(tables(report)) + f"\n\nreport: {args.out / 'results.md'} (and results.json)\n"
        f"figures:\n{figures}\n\n"
        "next: step through the rules in the notebooks (`.venv/bin/jupyter lab notebooks/`), or train one "
        "strategy yourself (`lad-edu train --config classroom_paa`)"
    )
    return report
