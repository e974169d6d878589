"""User-facing errors: one line that names the file and the fix, and a non-zero exit.

Every entry point (stage scripts, the ``activeseg`` console script) runs through
:func:`run_main`, so a bad input never ends in a stack trace.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable

EXIT_USER_ERROR = 2


class ActivesegError(Exception):
    """A problem the user can fix; the message is one line naming the file and what to do."""


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run_main(main: Callable[[], None]) -> None:
    """Call ``main`` and turn an :class:`ActivesegError` into ``error: …`` on stderr and exit 2.
    SIGTERM (a scheduler or ``dvc queue kill`` stopping the stage) exits through Python, so the
    atomic writes in progress remove their temporary files instead of leaving them behind."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        main()
    except ActivesegError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
