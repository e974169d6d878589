"""Atomic, reproducible writes of the pipeline's outputs.

A stage that fails or is killed must leave no half-written file behind: everything is written to
a hidden temporary sibling first and moved into place with ``os.replace`` only once complete.
Outputs are also byte-for-byte reproducible: the same data always gives the same bytes (``.npz``
archives get a fixed timestamp, JSON sorted keys), so ``dvc repro --force`` changes no hash.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, else it is removed."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(final)
    if directory:
        temporary = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + final.suffix,
                                        dir=final.parent)
        os.close(handle)
        temporary = Path(name)
    try:
        yield temporary
        # mkstemp / mkdtemp create private (0600 / 0700) entries; give the output the usual mode
        os.chmod(temporary, (0o777 if directory else 0o666) & ~_umask())
        if directory and final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
    except BaseException:
        if directory:
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(final: Path) -> None:
    """A killed writer (SIGKILL; SIGTERM unwinds only under :func:`activeseg.errors.run_main`)
    leaves its temporary sibling behind. DVC lets one stage at a time write an output, so any
    temporary of this output that exists now is such a leftover."""
    for leftover in final.parent.glob(f".{final.name}.*.tmp*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame without its index."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False, lineterminator="\n")


# ``np.savez`` stamps each zip entry with the current time, so the same arrays written twice
# differ in bytes (and in DVC hash). The earliest date a zip can hold makes them reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays as an uncompressed ``.npz`` (what ``np.load`` reads) with fixed timestamps:
    the pipeline's arrays are uint8 and re-read every run, and equal arrays give equal bytes."""
    with atomic_path(path) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                entry = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
                entry.external_attr = 0o644 << 16
                with archive.open(entry, "w", force_zip64=True) as stream:
                    np.lib.format.write_array(stream, np.asanyarray(array), allow_pickle=False)
