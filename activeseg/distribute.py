"""tf.distribute: the strategy that training builds and fits the model under, chosen in params.

``train.distribute`` picks TensorFlow's own engines (nothing home-made):

- ``none``: TensorFlow's default strategy (one device), the default;
- ``mirrored``: ``MirroredStrategy`` over every GPU of this host, or over every logical CPU
  device when there is no GPU (how the tests split one CPU in two); each batch of
  ``train.batch_size`` images is divided between the replicas and gradients are all-reduced;
- ``multi_worker_mirrored``: ``MultiWorkerMirroredStrategy`` across hosts; every worker runs the
  same train stage with its own ``TF_CONFIG`` (the cluster and this worker's index), see the
  README's "Reliability and scaling out".
"""

from __future__ import annotations

import json
import os

from activeseg.errors import ActivesegError
from activeseg.params import DISTRIBUTE_STRATEGIES
from activeseg.runtime import tf


def mirrored_devices() -> list[str]:
    """Every GPU, or every logical CPU device when there is no GPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]


def make_strategy(name: str) -> "tf.distribute.Strategy":
    """The strategy ``train.distribute`` names (see the module docstring)."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=mirrored_devices())
    if name == "multi_worker_mirrored":
        config = os.environ.get("TF_CONFIG")
        if config:
            try:
                json.loads(config)
            except ValueError:
                raise ActivesegError("TF_CONFIG: not valid JSON; set it to the cluster spec and this worker's "
                                     "task, or use train.distribute: mirrored on one host") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ActivesegError(f"params.yaml: `train.distribute` is {name!r}; use one of {', '.join(DISTRIBUTE_STRATEGIES)}")
