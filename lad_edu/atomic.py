"""Files that are either complete or absent: write beside the target, then rename over it.

``os.replace`` is atomic on one file system, so a reader (or a run resumed after a crash or Ctrl-C) sees
the previous file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open"]


def _umask() -> int:
    """The process's umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` when the block succeeds.

    On an exception (Ctrl-C included) the temporary file is removed and ``path`` is left as it was. The
    file gets the permissions ``open`` would give it (``0o666`` less the umask).

    >>> import json, pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "stats.json"
    >>> with atomic_open(target) as f:
    ...     json.dump({"AP": 0.5}, f)
    >>> json.loads(target.read_text())
    {'AP': 0.5}
    >>> oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0o600 would hide results from the user's group
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
