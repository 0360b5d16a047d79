"""The ``lad-edu`` command line.

    lad-edu make-data [--out data/classroom] [--train 400] [--val 100] [--seed 0]
    lad-edu check-data ROOT [--splits train2017,val2017] [--min-size 1]
    lad-edu train --config NAME_OR_YAML [--data ROOT] [--out RUN_DIR] [--set key=value ...]
                  [--resume | --overwrite]
    lad-edu eval --checkpoint PATH [--data ROOT] [--out DIR] [--partner] [--set key=value ...]
    lad-edu assign [--assigner fixed|atss|paa] [--config NAME] [--checkpoint PATH] [--data ROOT]
                   [--split val] [--index 0] [--out assignment.png] [--set key=value ...]
    lad-edu compare [--data ROOT] [--strategies fixed,atss,paa,lad] [--seeds 1] [--epochs N]
                    [--config NAME] [--set key=value ...] [--out runs/compare] [--jobs auto]

``train`` and ``eval`` default ``--data`` to the config's ``data.root`` (the classroom dataset under
``data/``, written on first use). ``train --out`` defaults to ``runs/<config name>``. Under ``torchrun``
every process runs the same command (see :mod:`lad_edu.train.distributed`).

``check-data`` opens every split as training would (the reader's errors, one line each) and prints what
it holds: images, boxes, categories, images without objects, boxes not trained on and why.

``assign`` draws the labels training gives one image (:func:`assignment`): the run's assigner with its
options, crowd regions ignored; ``--assigner`` picks another.

``compare`` trains every strategy on the same data, schedule and seeds and writes a report with figures
(:mod:`lad_edu.compare`).

``train`` refuses a ``--out`` that already holds a run unless ``--resume`` (continue it) or ``--overwrite``
(replace it) is given; ``--resume`` of a finished run says so and where its results are, and exits 0.
Errors are one line ``lad-edu COMMAND: error: ...`` and exit 1; Ctrl-C during training writes a
checkpoint, prints one line saying how to resume, and exits 130.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from torch import Tensor

from lad_edu.assign import ASSIGNERS, AssignResult, assigner_class
from lad_edu.data.classroom import DEFAULT_DATA, data_root, make_classroom_dataset

if TYPE_CHECKING:
    from lad_edu.train.config import TrainConfig


def _train(args: argparse.Namespace) -> None:
    from lad_edu.train import load_config, train
    from lad_edu.train.evaluate import format_stats

    cfg = load_config(args.config, args.set)
    cfg.data.root = data_root(args.data, cfg.data.root)
    out = args.out or Path("runs") / Path(args.config).stem
    result = train(cfg, out, resume=args.resume, overwrite=args.overwrite)
    if result["already_finished"]:
        print(
            f"{out} is already finished (epoch {result['epoch']}, iteration {result['iter']}): its metrics "
            f"are in {out / 'metrics.jsonl'}, its last evaluation in {out / 'eval'}; to train longer raise "
            "optim.epochs (or max_iters) and --resume, to start again use --overwrite"
        )
    elif result.get("eval"):
        print(f"{out}: epoch {result['epoch']}\n{format_stats(result['eval'])}")


def _check_data(args: argparse.Namespace) -> None:
    from lad_edu.data.check import check_dataset

    splits = tuple(args.splits.split(",")) if args.splits else None
    print(check_dataset(args.root, splits=splits, min_size=args.min_size))


def _load_run(checkpoint: Path, overrides: list[str], data: Path | None, partner: bool = False):
    """The config and the trained detector of a lad_edu run checkpoint (refused, with the reason, if not)."""
    from lad_edu.train.checkpoint import load_run_detector

    cfg, state, model = load_run_detector(checkpoint, overrides, partner=partner)
    cfg.data.root = data_root(data, cfg.data.root)
    return cfg, state, model


def _eval(args: argparse.Namespace) -> None:
    from lad_edu.data.coco import CocoDetection
    from lad_edu.train import evaluate_detector
    from lad_edu.train.checkpoint import check_category_ids
    from lad_edu.train.distributed import init_distributed, shutdown
    from lad_edu.train.evaluate import format_stats

    cfg, state, model = _load_run(args.checkpoint, args.set, args.data, partner=args.partner)
    dataset = CocoDetection(cfg.data.root, cfg.data.val_split, min_size=cfg.data.min_box_size)
    check_category_ids(
        state["category_ids"],
        dataset.category_ids,
        f"checkpoint {args.checkpoint}",
        str(dataset.annotation_file),
    )
    dist = init_distributed(cfg.device)
    try:
        stats = evaluate_detector(model.to(dist.device), dataset, cfg, dist, args.out)
    finally:
        shutdown()
    if stats is not None:
        print(f"{args.out}:\n{format_stats(stats)}")


class Assignment(NamedTuple):
    """One image's assignment, as ``lad-edu assign`` draws it."""

    result: AssignResult  # the labels, crowd regions included
    anchors: Tensor  # [N, 4] xyxy
    num_level_anchors: list[int]
    image: Tensor  # [3, H, W], after the eval transform
    target: dict  # boxes, labels, crowd_boxes, size, image_id
    cfg: TrainConfig  # the config the assigner came from


def assignment(
    *,
    checkpoint: Path | None = None,
    config: str = "classroom_paa",
    overrides: Sequence[str] = (),
    data: Path | None = None,
    split: str = "val",
    index: int = 0,
    assigner: str | None = None,
) -> Assignment:
    """The labels training gives image ``index`` of ``split``: ``lad-edu assign`` without the drawing.

    The run's own learner decides (:func:`lad_edu.train.labels.labeller`): its assigner, built with the
    config's options, on the predictions its mode names (the network's own, a LAD teacher's, CoLAD's
    better network's), crowd regions ignored; the networks in eval mode. Without a checkpoint the network
    is untrained (drawn from the config's seed). ``assigner`` names another rule for the same network: it
    then reads the network's own predictions (``distill.mode`` none).
    """
    from lad_edu.data.coco import CocoDetection
    from lad_edu.data.transforms import EvalTransform, collate
    from lad_edu.train import load_config
    from lad_edu.train.checkpoint import check_category_ids, load_run_checkpoint
    from lad_edu.train.config import override_config
    from lad_edu.train.labels import labeller

    state = load_run_checkpoint(checkpoint) if checkpoint is not None else None
    cfg = override_config(state["config"], list(overrides)) if state else load_config(config, list(overrides))
    cfg.data.root = data_root(data, cfg.data.root)
    if assigner is not None and assigner != cfg.assign.assigner:
        cfg.assign.assigner, cfg.distill.mode = assigner, "none"
    dataset = CocoDetection(cfg.data.root, split, min_size=cfg.data.min_box_size)
    if state is not None:
        check_category_ids(
            state["category_ids"],
            dataset.category_ids,
            f"checkpoint {checkpoint}",
            str(dataset.annotation_file),
        )
    if not 0 <= index < len(dataset):
        raise ValueError(f"--index {index} is outside split {split!r} ({len(dataset)} images)")
    image, target = EvalTransform(cfg.data.eval_short_side, cfg.data.max_size)(*dataset[index])
    images, targets = collate([(image, target)])
    label = labeller(cfg, dataset.category_ids, state, source=str(checkpoint))
    results, anchors, num_level_anchors = label(images, targets)
    return Assignment(results[0], anchors, num_level_anchors, image, target, cfg)


def _assign(args: argparse.Namespace) -> None:
    from lad_edu.viz import draw_assignment_levels

    drawn = assignment(
        checkpoint=args.checkpoint,
        config=args.config,
        overrides=args.set,
        data=args.data,
        split=args.split,
        index=args.index,
        assigner=args.assigner,
    )
    cfg, target = drawn.cfg, drawn.target
    name = cfg.assign.assigner
    if args.checkpoint is None and assigner_class(name).uses_predictions:
        print(f"no --checkpoint: {name}'s costs come from an untrained network")
    boxes = target["boxes"]
    title = f"{name}: {drawn.result.num_pos} positives for {len(boxes)} objects (image {target['image_id']})"
    figure = draw_assignment_levels(
        drawn.result,
        drawn.anchors,
        drawn.num_level_anchors,
        boxes,
        image=drawn.image,
        strides=list(cfg.model.strides),
        title=title,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"{title}\nwritten to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    """The ``lad-edu`` parser: one sub-command per line of the module docstring."""
    parser = argparse.ArgumentParser(
        prog="lad-edu", description="Label assignment, from the classroom to COCO."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    make_data = commands.add_parser("make-data", help="write the classroom dataset (COCO layout)")
    make_data.add_argument(
        "--out", type=Path, default=DEFAULT_DATA, help=f"dataset folder (default {DEFAULT_DATA})"
    )
    make_data.add_argument("--train", type=int, default=400, help="training images (default 400)")
    make_data.add_argument("--val", type=int, default=100, help="validation images (default 100)")
    make_data.add_argument("--seed", type=int, default=0, help="the same seed writes the same dataset")

    check_data = commands.add_parser("check-data", help="check a COCO-layout dataset before training on it")
    check_data.add_argument("root", type=Path, help="dataset folder: ROOT/annotations/instances_<split>.json")
    check_data.add_argument(
        "--splits", default=None, help="comma-separated splits (default: every annotation file found)"
    )
    check_data.add_argument(
        "--min-size", type=float, default=1.0, help="boxes narrower or lower (px) are not trained on"
    )

    overrides = dict(
        action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)"
    )
    data = dict(type=Path, default=None, help="COCO-layout dataset root (default: the config's data.root)")

    train = commands.add_parser("train", help="train (and evaluate) a detector")
    train.add_argument("--config", required=True, help="a shipped config name or a .yaml path")
    train.add_argument("--data", **data)
    train.add_argument("--out", type=Path, default=None, help="run directory (default runs/<config>)")
    train.add_argument("--set", **overrides)
    train.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    train.add_argument("--overwrite", action="store_true", help="delete the run already in RUN_DIR first")

    evaluate = commands.add_parser("eval", help="COCO evaluation of a checkpoint")
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--data", **data)
    evaluate.add_argument("--out", type=Path, default=Path("eval"), help="output folder (default eval/)")
    evaluate.add_argument("--partner", action="store_true", help="evaluate CoLAD's second network")
    evaluate.add_argument("--set", **overrides)

    assign = commands.add_parser("assign", help="draw one image's assignment (as training makes it) to a PNG")
    assign.add_argument(
        "--assigner", choices=list(ASSIGNERS), default=None, help="default: the config's assign.assigner"
    )
    assign.add_argument("--config", default="classroom_paa", help="used when no --checkpoint is given")
    assign.add_argument("--checkpoint", type=Path, default=None, help="a trained run (PAA's costs)")
    assign.add_argument("--data", **data)
    assign.add_argument("--split", default="val")
    assign.add_argument("--index", type=int, default=0, help="which image of the split")
    assign.add_argument("--out", type=Path, default=Path("assignment.png"))
    assign.add_argument("--set", **overrides)

    from lad_edu.compare import add_compare_arguments

    compare = commands.add_parser("compare", help="train several strategies side by side and report")
    add_compare_arguments(compare)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "make-data":
        root = make_classroom_dataset(args.out, num_train=args.train, num_val=args.val, seed=args.seed)
        print(f"classroom dataset written to {root}")
        return
    from lad_edu.compare import RunFailedError, run_compare
    from lad_edu.train.checkpoint import CheckpointError
    from lad_edu.train.engine import NonFiniteLossError, RunInterrupted
    from lad_edu.train.run_dir import RunDirError

    commands = {
        "check-data": _check_data,
        "train": _train,
        "eval": _eval,
        "assign": _assign,
        "compare": run_compare,
    }
    try:
        commands[args.command](args)
    except (ValueError, OSError, CheckpointError, NonFiniteLossError, RunDirError, RunFailedError) as error:
        sys.exit(f"lad-edu {args.command}: error: {_one_line(error)}")
    except KeyboardInterrupt as interrupt:
        line = f"lad-edu {args.command}: interrupted"
        if isinstance(interrupt, RunInterrupted):
            line += f": {interrupt}; resume with: {_resume_command(sys.argv[1:] if argv is None else argv)}"
        elif args.command == "compare":
            line += ": finished runs are kept, the others have checkpoints; run the same command to resume"
        print(line, file=sys.stderr)
        sys.exit(130)  # the shell's code for "ended by SIGINT"


def _one_line(error: BaseException) -> str:
    """The error's message; for an error raised in a DataLoader worker, the original exception's last line.

    torch re-raises a worker's error as "Caught ValueError in DataLoader worker process 0.\nOriginal
    Traceback (most recent call last): ..."; its last line is the original "ValueError: <message>".
    """
    text = str(error)
    return text.rstrip().splitlines()[-1] if "Original Traceback" in text else text


def _resume_command(argv: list[str]) -> str:
    """The ``lad-edu train`` command line that continues the run ``argv`` started."""
    kept = [arg for arg in argv if arg not in ("--overwrite", "--resume")]
    return shlex.join(["lad-edu", *kept, "--resume"])


if __name__ == "__main__":
    main()
