"""User-facing errors: one line that names the file and the fix, and a non-zero exit.

Every entry point (stage scripts, the ``activeseg`` console script) runs through
:func:`run_main`, so a bad input never ends in a stack trace.
"""

from __future__ import annotations

import sys
from typing import Callable

EXIT_USER_ERROR = 2


class ActivesegError(Exception):
    """A problem the user can fix; the message is one line naming the file and what to do."""


def run_main(main: Callable[[], None]) -> None:
    """Call ``main`` and turn an :class:`ActivesegError` into ``error: …`` on stderr and exit 2."""
    try:
        main()
    except ActivesegError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
