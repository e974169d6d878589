"""User-facing errors and stops: one line that names the file and the fix, and a non-zero exit.

Every entry point (stage scripts, the ``activeseg`` console script) runs through
:func:`run_main`, so a bad input never ends in a stack trace, and SIGTERM unwinds like Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable

EXIT_USER_ERROR = 2


class ActivesegError(Exception):
    """A problem the user can fix; the message is one line naming the file and what to do."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt: by default Python dies on SIGTERM without
    unwinding, which would leave temporary outputs behind and the MLflow run RUNNING forever."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def run_main(main: Callable[[], None]) -> None:
    """Call ``main``; an :class:`ActivesegError` becomes ``error: …`` on stderr and exit 2, and
    Ctrl-C or SIGTERM one ``stopped by …`` line and the shell's exit code for that signal."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        main()
    except ActivesegError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as stop:
        signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        print(f"stopped by {signum.name}", file=sys.stderr)
        sys.exit(128 + signum)
