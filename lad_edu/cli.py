"""The ``lad-edu`` command line.

    lad-edu make-data [--out data/classroom] [--train 400] [--val 100] [--seed 0]

(``train``, ``eval``, ``assign`` and ``compare`` come with the training engine.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lad_edu.data.classroom import make_classroom_dataset

DEFAULT_DATA = Path("data") / "classroom"


def main(argv: list[str] | None = None) -> None:
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
    args = parser.parse_args(argv)
    if args.command == "make-data":
        root = make_classroom_dataset(args.out, num_train=args.train, num_val=args.val, seed=args.seed)
        print(f"classroom dataset written to {root}")


if __name__ == "__main__":
    main()
