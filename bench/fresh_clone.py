"""What the fresh-clone benchmarks share: a clone of this repository's HEAD, the environment a new
user has, the README's commands timed (with the seconds of each `dvc repro` stage), the machine.

Used by bench/first_run.py (the built-in data) and bench/own_data.py (a data set in data/raw).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_TARGET = ".venv/.installed"  # the Makefile's install step, the first thing `make run` does
_STAGE_LINE = re.compile(r"^Running stage '([^']+)'")


def clone_head(prefix: str) -> Path:
    """A `git clone` of this repository's HEAD in a new temporary folder (delete its parent when done)."""
    clone = Path(tempfile.mkdtemp(prefix=prefix)) / "activeseg"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    return clone


def finish(clone: Path, keep: bool) -> None:
    """Deletes the clone made by :func:`clone_head` (its temporary parent), or says where it is kept."""
    if keep:
        print(f"clone kept: {clone}")
    else:
        shutil.rmtree(clone.parent, ignore_errors=True)


def user_environment(clone: Path, venv: str | None = None) -> dict[str, str]:
    """This process's environment less what would leak the developer's setup into the clone's run;
    with `venv`, that environment's bin first on PATH (to skip the install) and the clone on
    PYTHONPATH: the venv's editable install would otherwise import its own checkout's activeseg."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "VIRTUAL_ENV", "PYTHONPATH", "DVC_EXP_NAME", "TF_CONFIG")}
    if venv:
        env["PATH"] = f"{Path(venv).resolve() / 'bin'}{os.pathsep}{env['PATH']}"
        env["PYTHONPATH"] = str(clone)
    return env


def run_timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, float, dict[str, float]]:
    """Runs `command`, echoing its output; returns its exit status, wall seconds and, for each
    `dvc repro` stage it ran, the seconds from that stage's start to the next one's (or the end)."""
    started = time.monotonic()
    stage_seconds: dict[str, float] = {}
    stage, stage_started = None, started
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            match = _STAGE_LINE.match(line)
            if match:
                now = time.monotonic()
                if stage:
                    stage_seconds[stage] = round(now - stage_started, 1)
                stage, stage_started = match.group(1), now
    finished = time.monotonic()
    if stage:
        stage_seconds[stage] = round(finished - stage_started, 1)
    return process.returncode, round(finished - started, 1), stage_seconds


def revision(clone: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()


def cpu_model() -> str:
    """The CPU's model name as lscpu shows it, with its family / model numbers and its widest vector
    and bfloat16 instructions: figures differ by CPU (oneDNN's defaults and bfloat16 speed depend on
    it), and one name ("AMD EPYC") covers a Zen 3 with AVX2 only and a Zen 4 with AVX-512-BF16."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    def field(name: str) -> str:
        values = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.split(":")[0].strip() == name]
        return values[0] if values else "?"

    flags = set(field("flags").split())
    features = [name for name in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if name in flags][:2]
    return (f"{field('model name')} (family {field('cpu family')} model {field('model')}; "
            f"{', '.join(features) or 'no AVX2'})")


def machine() -> str:
    return f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages: on a shared machine they say how much the figures mean."""
    return [round(value, 2) for value in os.getloadavg()]


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
