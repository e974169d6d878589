"""Process-wide set-up for TensorFlow, Keras and segmentation_models: import them from here.

``segmentation_models`` must see ``SM_FRAMEWORK=tf.keras`` before it is imported (its default,
``keras``, breaks on Keras 3), and TensorFlow's chatter is quietened before TensorFlow loads.
``TF_CPP_MIN_LOG_LEVEL=3`` also drops TensorFlow's C++ ERROR lines: a ``fit`` logs one
(``NodeDef mentions attribute use_unbounded_threadpool``) on every run, which no user can act on,
and a real failure still raises a Python exception. Set the variable yourself to see them.

``TF_CPP_MIN_LOG_LEVEL`` does not reach everything: TensorFlow 2.21 logs its start-up notices
through absl before anything calls ``absl::InitializeLog()``, so they go to stderr whatever the
level (tensorflow/tensorflow#100442, #79029). On CPUs where oneDNN is on (by default on Intel
Xeons with AVX-512 / AMX; always with ``TF_ENABLE_ONEDNN_OPTS=1``) every process printed the absl
pre-init warning and "oneDNN custom operations are on" twice. oneDNN itself stays on (it makes
training about 2x faster there): while TensorFlow loads, stderr is passed through
:func:`_quiet_startup`, which drops exactly the oneDNN INFO notice (:data:`STARTUP_NOTICES`) and the
absl warning and hands every other line (warnings, errors, tracebacks) on as it arrives.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading

# Before the first TensorFlow import; a user's own TF_CPP_MIN_LOG_LEVEL wins and shows everything.
_USER_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ABSL_PREINIT_WARNING = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl's INFO line ("I<mmdd> <time> <thread> <file>:<line>] <text>") that TensorFlow prints on import
STARTUP_NOTICES = re.compile(r"^I\d{4} [\d:.]+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on\. ")


def is_startup_notice(line: str) -> bool:
    """True for the start-up lines TensorFlow prints whatever ``TF_CPP_MIN_LOG_LEVEL`` says."""
    line = line.rstrip("\r\n")
    return line == ABSL_PREINIT_WARNING or bool(STARTUP_NOTICES.match(line))


@contextlib.contextmanager
def _quiet_startup():
    """Route file descriptor 2 (where C++ code writes) through a pipe for the ``with`` block; a
    thread forwards each line to the real stderr unless it is a start-up notice."""
    if _USER_LOG_LEVEL is not None and _USER_LOG_LEVEL != "3":
        yield
        return
    sys.stderr.flush()
    real_stderr = os.dup(2)
    read_end, write_end = os.pipe()

    def forward() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not is_startup_notice(line.decode("utf-8", "replace")):
                    os.write(real_stderr, line)

    forwarder = threading.Thread(target=forward, name="tf-startup-stderr", daemon=True)
    forwarder.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # closes the pipe's last write end: the forwarder reads to its end
        forwarder.join()
        os.close(real_stderr)


with _quiet_startup():
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402


def segmentation_models():
    """The ``segmentation_models`` module, imported only once the framework is set."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the framework it uses on import
        import segmentation_models as sm

    return sm


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and ask TensorFlow for deterministic kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
