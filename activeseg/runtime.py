"""Process-wide set-up for TensorFlow, Keras and segmentation_models: import them from here.

``segmentation_models`` must see ``SM_FRAMEWORK=tf.keras`` before it is imported (its default,
``keras``, breaks on Keras 3), and TensorFlow's chatter is quietened before TensorFlow loads.
"""

from __future__ import annotations

import os

os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


def segmentation_models():
    """The ``segmentation_models`` module, imported only once the framework is set."""
    import segmentation_models as sm

    return sm


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and ask TensorFlow for deterministic kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
