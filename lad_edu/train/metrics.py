"""Reading a run's ``metrics.jsonl``, also while the run is still writing it.

The engine (:class:`~lad_edu.train.engine.MetricsLog`) appends one strict-JSON object per line: a
``"kind": "train"`` row every ``log_every`` iterations (``epoch``, ``iter``, ``global_iter``, ``lr``,
``images_per_s``, the ``loss*`` means of the window, the assignment statistics of
:mod:`lad_edu.train.stats`) and a ``"kind": "eval"`` row after each evaluation (``epoch`` and the 12 COCO
numbers; CoLAD's second network's row has ``"network": 2``). A number with nothing to measure is null.

A reader that polls a running training can catch a line half written. :func:`read_metrics` skips such a
last line (it has no newline yet and is not valid JSON); a broken line anywhere else is an error.

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as run:
...     _ = (Path(run) / "metrics.jsonl").write_text('{"kind": "train", "iter": 1}\\n{"kind": "ev')
...     read_metrics(run)
[{'kind': 'train', 'iter': 1}]
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["KINDS", "read_metrics"]

KINDS = ("train", "eval")


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict]:
    """The rows of ``run_dir/metrics.jsonl`` in the order written, all or those of one ``kind``.

    Args:
        run_dir: a run directory (``lad-edu train --out``).
        kind: ``"train"``, ``"eval"``, or None for every row.

    Returns:
        The rows as dicts (null values as None); ``[]`` while the file does not exist yet.

    Raises:
        ValueError: an unknown ``kind``; a line other than a half-written last one that is not JSON
            (naming the file and the line).
    """
    if kind not in (*KINDS, None):
        raise ValueError(f"kind must be one of {list(KINDS)} or None, got {kind!r}")
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines) and not text.endswith("\n"):
                break  # the line the run is writing now
            raise ValueError(
                f"{path}: line {number} is not JSON ({error.msg}); was the file edited?"
            ) from None
    return [row for row in rows if kind is None or row["kind"] == kind]
