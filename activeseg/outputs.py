"""Atomic writes of the pipeline's outputs.

A stage that fails or is killed must leave no half-written file behind: everything is written to
a hidden temporary sibling first and moved into place with ``os.replace`` only once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, else it is removed."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        temporary = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + final.suffix,
                                        dir=final.parent)
        os.close(handle)
        temporary = Path(name)
    try:
        yield temporary
        if directory and final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
    except BaseException:
        if directory:
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame without its index."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False, lineterminator="\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays uncompressed: the pipeline's arrays are uint8 and re-read every run."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.savez(stream, **arrays)
