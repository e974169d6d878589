"""Process-wide set-up for TensorFlow, Keras and segmentation_models: import them from here.

``segmentation_models`` must see ``SM_FRAMEWORK=tf.keras`` before it is imported (its default,
``keras``, breaks on Keras 3), and TensorFlow's chatter is quietened before TensorFlow loads.
``TF_CPP_MIN_LOG_LEVEL=3`` also drops TensorFlow's C++ ERROR lines: a ``fit`` logs one
(``NodeDef mentions attribute use_unbounded_threadpool``) on every run, which no user can act on,
and a real failure still raises a Python exception. Set the variable yourself to see them.
"""

from __future__ import annotations

import contextlib
import io
import os

os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
