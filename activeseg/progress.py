"""Progress for long steps: a tqdm bar on a terminal, a few plain lines in logs (DVC, CI)."""

from __future__ import annotations

import sys
from typing import Iterable, Optional, Sized, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], description: str, total: Optional[int] = None) -> Iterable[T]:
    if total is None and isinstance(items, Sized):
        total = len(items)
    interactive = sys.stderr.isatty()
    # Outside a terminal tqdm would print one line per refresh; a line every ~10% is enough there.
    return tqdm(items, desc=description, total=total, unit="img", file=sys.stderr,
                mininterval=0.5 if interactive else 5.0, disable=None if interactive else False,
                dynamic_ncols=True, ascii=not interactive)
