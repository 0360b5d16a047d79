"""The shipped reference: one classroom comparison of every strategy, small enough to live in the package.

Notebooks at ``SCALE = "tiny"`` draw *trained* networks from it in seconds instead of training for minutes:
the PAA network's weights (fp16, a few MB), and for every strategy the run's ``config.yaml``,
``metrics.jsonl`` (losses, assignment statistics, CoLAD's ρ) and ``snapshots.jsonl`` (each GT's candidates,
costs, GMM and cut on a few validation images, epoch after epoch), with the comparison's ``results.json``
and figures. ``make reference`` (``python -m lad_edu.reference``) makes it again from nothing::

    lad_edu/assets/reference/
        reference.json          how it was made, and the val AP of the shipped (fp16) PAA weights
        results.json            the comparison's report (lad_edu.compare), run_dir relative to this folder
        figures/*.png           the comparison's figures
        paa.pt                  the PAA run's checkpoint, weights in fp16, without optimizer state
        runs/<strategy>/        config.yaml, metrics.jsonl, snapshots.jsonl, coco_stats.json
        larger_student/         the paper's Table 3 in miniature: a wider network trained with PAA, and
                                with LAD taught by the small PAA network above (results.json, runs/)
        modern/                 beyond the paper: fixed, ATSS and PAA next to the rules of newer detectors
                                (task-aligned, SimOTA, Hungarian), one comparison (results.json, figures/,
                                runs/)

The comparison is ``lad-edu compare --strategies fixed,atss,paa,soft,lad,solad,colad`` with the default
``classroom_compare`` preset and seed 0, on the classroom data ``lad-edu make-data`` writes (the same seed
writes the same images). ``paa.pt`` is a run checkpoint like any other: ``lad-edu eval``, ``lad-edu
assign`` and ``distill.teacher_checkpoint`` take it; it cannot be resumed (no optimizer state). The
larger student differs from the small network only by :data:`LARGER_STUDENT` (1.7x the parameters).
``modern/`` is ``lad-edu compare --strategies fixed,atss,paa,tal,simota,hungarian`` (:data:`MODERN`) with
the same preset and seed: a comparison of its own, so its fixed, ATSS and PAA runs are trained again beside
the new rules (the same seed gives them the numbers of the main comparison).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch

from lad_edu.atomic import atomic_open
from lad_edu.compare import compare
from lad_edu.data.classroom import data_root
from lad_edu.train.checkpoint import load_run_checkpoint, load_run_detector, save_checkpoint

__all__ = [
    "LARGER_STUDENT",
    "MODERN",
    "REFERENCE",
    "STRATEGIES",
    "build_reference",
    "evaluate_reference",
    "export_weights",
    "load_reference_detector",
    "reference_results",
    "reference_run",
]

REFERENCE = Path(__file__).resolve().parent / "assets" / "reference"
STRATEGIES = ("fixed", "atss", "paa", "soft", "lad", "solad", "colad")
MODERN = ("fixed", "atss", "paa", "tal", "simota", "hungarian")  # modern/: the rules of newer detectors
SHIPPED_RUN_FILES = ("config.yaml", "metrics.jsonl", "snapshots.jsonl", "eval/coco_stats.json")
WEIGHTS = "paa.pt"
LARGER_STUDENT = ("model.fpn_channels=128", "model.head_channels=128")  # 2.6M parameters against 1.5M


def _missing(root: Path, what: Path) -> FileNotFoundError:
    return FileNotFoundError(f"the reference at {root} has no {what}; write it with `make reference`")


def reference_results(root: str | Path = REFERENCE) -> dict:
    """The reference comparison's report (``results.json``; see :mod:`lad_edu.compare`)."""
    path = Path(root) / "results.json"
    if not path.is_file():
        raise _missing(Path(root), Path("results.json"))
    return json.loads(path.read_text())


def reference_run(strategy: str, root: str | Path = REFERENCE) -> Path:
    """The folder of the reference's ``strategy`` run (``metrics.jsonl``, ``snapshots.jsonl``, ...); the
    larger student's runs with ``root=REFERENCE / "larger_student"``."""
    path = Path(root) / "runs" / strategy
    if not path.is_dir():
        shipped = sorted(p.name for p in (Path(root) / "runs").glob("*")) if Path(root).is_dir() else []
        raise ValueError(f"the reference has no {strategy!r} run; it has {shipped or 'none'}")
    return path


def load_reference_detector(root: str | Path = REFERENCE, overrides: Sequence[str] = ()):
    """The reference PAA network: ``(cfg, state, detector)``, fp16 weights loaded strictly into fp32."""
    path = Path(root) / WEIGHTS
    if not path.is_file():
        raise _missing(Path(root), Path(WEIGHTS))
    return load_run_detector(path, overrides)


def export_weights(checkpoint: Path, out: Path) -> Path:
    """Write ``checkpoint``'s network as a run checkpoint with fp16 weights and no optimizer state."""
    state = load_run_checkpoint(checkpoint)
    model = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    exported = {**state, "model": model, "optimizer": {}, "scheduler": {}, "scaler": {}}
    exported.pop("partner", None)
    return save_checkpoint(exported, out)


def evaluate_reference(root: str | Path = REFERENCE, data: str | Path | None = None, out: Path | None = None):
    """COCO numbers of the shipped PAA weights on the validation split of ``data`` (default: the classroom
    data, written on first use)."""
    from lad_edu.data.coco import CocoDetection
    from lad_edu.train import evaluate_detector
    from lad_edu.train.distributed import Dist

    cfg, _, detector = load_reference_detector(root)
    cfg.data.root = data_root(data, cfg.data.root)
    dataset = CocoDetection(cfg.data.root, cfg.data.val_split, min_size=cfg.data.min_box_size)
    with tempfile.TemporaryDirectory() as tmp:
        return evaluate_detector(detector, dataset, cfg, Dist(0, 1, torch.device("cpu")), out or Path(tmp))


def _ship(report: dict, work: Path, out: Path) -> None:
    """Copy what the reference keeps of a comparison in ``work`` (each run's :data:`SHIPPED_RUN_FILES`,
    the figures, ``results.json`` with run directories relative to ``out``) to ``out``."""
    for name, entry in report["strategies"].items():
        run = entry["runs"][0]
        source, target = Path(run["run_dir"]), out / "runs" / name
        target.mkdir(parents=True)
        for relative in SHIPPED_RUN_FILES:
            if (source / relative).is_file():
                shutil.copy2(source / relative, target / Path(relative).name)
        run["run_dir"], run["detections"] = f"runs/{name}", None  # detections are not shipped
    shutil.copytree(work / "figures", out / "figures")
    with atomic_open(out / "results.json") as f:
        json.dump(report, f, indent=1)


def build_reference(
    *,
    out: str | Path = REFERENCE,
    work: str | Path = "runs/reference",
    jobs: int | str = "auto",
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> dict:
    """Run the reference comparison into ``work`` (reused or resumed there) and write ``out`` from it.

    ``data`` and ``overrides`` (``key=value`` for every run) change what :func:`lad_edu.compare.compare`
    trains; the shipped reference uses neither. ``out`` is replaced only when everything is written (a
    temporary folder beside it is renamed). Returns ``reference.json``'s content.
    """
    out, work = Path(out), Path(work)
    data = data_root(data, "data/classroom")  # the classroom data, written on first use
    report = compare(data=data, strategies=STRATEGIES, seeds=1, out=work, jobs=jobs, overrides=overrides)
    teacher = work / "paa" / "seed0" / "checkpoint.pt"
    larger_work = work / "larger_student"
    larger = compare(
        data=data,
        strategies=("paa", "lad"),
        overrides=[*overrides, *LARGER_STUDENT],
        teacher=teacher,
        out=larger_work,
        jobs=jobs,
    )
    modern_work = work / "modern"
    modern = compare(data=data, strategies=MODERN, seeds=1, out=modern_work, jobs=jobs, overrides=overrides)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0o700 would keep an installed package's reference from other users
    _ship(report, work, staging)
    _ship(larger, larger_work, staging / "larger_student")
    _ship(modern, modern_work, staging / "modern")
    export_weights(teacher, staging / WEIGHTS)
    stats = evaluate_reference(staging, data)
    info = {
        "command": "make reference (python -m lad_edu.reference)",
        "made": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "strategies": list(STRATEGIES),
        "paa_val_AP_run": report["strategies"]["paa"]["runs"][0]["coco"]["AP"],
        "paa_val_AP_fp16": stats["AP"],
        "larger_student": list(LARGER_STUDENT),
        "modern": list(MODERN),
    }
    with atomic_open(staging / "reference.json") as f:
        json.dump(info, f, indent=1)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return info


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write the shipped reference (make reference)")
    parser.add_argument("--out", type=Path, default=REFERENCE, help=f"default {REFERENCE}")
    parser.add_argument("--work", type=Path, default=Path("runs/reference"), help="where the runs train")
    parser.add_argument("--jobs", default="auto", help="runs trained at once (default: one per core)")
    args = parser.parse_args(argv)
    info = build_reference(out=args.out, work=args.work, jobs=args.jobs)
    print(f"reference written to {args.out}: PAA val AP {100 * info['paa_val_AP_fp16']:.1f} (fp16 weights)")


if __name__ == "__main__":
    main()
