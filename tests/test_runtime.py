"""TensorFlow's start-up chatter stays out of every stage's output on any CPU, oneDNN on or off,
and nothing else that TensorFlow or the stage writes to stderr is lost."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO_ROOT
from test_pipeline import CHATTER

ABSL_PREINIT_WARNING = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"

ONEDNN_NOTICE = ("I0000 00:00:1796238102.828837    2248 port.cc:153] oneDNN custom operations are on. You may see "
                 "slightly different numerical results due to floating-point round-off errors from different "
                 "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.")


def stage_help(onednn: str, log_level: str | None = None) -> subprocess.CompletedProcess:
    """``stages/train.py --help`` in a fresh process: it imports TensorFlow as every training stage does."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, PYTHONPATH=str(REPO_ROOT))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if log_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = log_level
    return subprocess.run([sys.executable, "stages/train.py", "--help"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=True)


def test_a_tensorflow_stage_prints_no_startup_chatter():
    # TF_ENABLE_ONEDNN_OPTS=1 makes TensorFlow announce oneDNN on any x86 CPU, as it does unasked on
    # Intel Xeons with AVX-512 / AMX (with 0 it says nothing, so there is nothing to filter)
    result = stage_help("1")
    chatter = [line for line in (result.stdout + result.stderr).splitlines() if any(noise in line for noise in CHATTER)]
    assert not chatter, chatter
    assert "usage: train.py" in result.stdout


def test_the_notice_is_there_to_hide_and_a_user_log_level_shows_it():
    # the same process with the user's own TF_CPP_MIN_LOG_LEVEL: nothing is filtered, so the
    # oneDNN notice TensorFlow prints is seen (without it the test above would prove nothing)
    result = stage_help("1", log_level="0")
    assert ABSL_PREINIT_WARNING in result.stderr.splitlines()
    assert "oneDNN custom operations are on" in result.stderr


def test_only_the_known_notices_are_dropped():
    from activeseg.runtime import is_startup_notice

    assert is_startup_notice(ABSL_PREINIT_WARNING + "\n")
    assert is_startup_notice(ONEDNN_NOTICE + "\n")
    for kept in ("E0000 00:00:1796238102.828837    2248 port.cc:153] oneDNN custom operations are on. ",
                 "W0000 00:00:1.2    7 cpu_allocator_impl.cc:83] Allocation of 4294967296 exceeds 10% of free memory.",
                 "Traceback (most recent call last):", "error: data/raw/a.png: not an image",
                 "oneDNN custom operations are on"):
        assert not is_startup_notice(kept), kept


def test_what_else_reaches_stderr_while_tensorflow_loads_is_handed_on(capfd):
    # lines written to file descriptor 2 (as C++ code writes) inside the filter, among notices
    from activeseg.runtime import _quiet_startup

    capfd.readouterr()
    with _quiet_startup():
        os.write(2, f"{ABSL_PREINIT_WARNING}\n{ONEDNN_NOTICE}\n".encode())
        os.write(2, b"E0000 real failure in a kernel\n")
        print("a Python warning", file=sys.stderr)
        os.write(2, f"{ONEDNN_NOTICE}\n".encode())
    os.write(2, b"after\n")
    # (pytest's capfd gives Python's sys.stderr its own path, so only the set of lines is compared)
    assert sorted(capfd.readouterr().err.splitlines()) == ["E0000 real failure in a kernel", "a Python warning", "after"]
