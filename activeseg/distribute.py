"""tf.distribute: the strategy that training builds and fits the model under, chosen in params.

``train.distribute`` picks TensorFlow's own engines (nothing home-made):

- ``none``: TensorFlow's default strategy (one device), the default;
- ``mirrored``: ``MirroredStrategy`` over every GPU of this host, or over every logical CPU
  device when there is no GPU (how the tests split one CPU in two); each batch of
  ``train.batch_size`` images is divided between the replicas and gradients are all-reduced;
- ``multi_worker_mirrored``: ``MultiWorkerMirroredStrategy`` across hosts; every worker runs the
  same train stage with its own ``TF_CONFIG`` (the cluster and this worker's index), see the
  README's "Reliability and scaling out". Every worker trains and saves (saving may need the
  others), but only the chief's files are kept: the others write to a temporary folder that is
  deleted (TensorFlow's multi-worker rule), see :func:`is_chief` and :func:`worker_path`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from activeseg.errors import ActivesegError
from activeseg.params import DISTRIBUTE_STRATEGIES
from activeseg.runtime import tf


def mirrored_devices() -> list[str]:
    """Every GPU, or every logical CPU device when there is no GPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]


class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` with the ``reduce`` that Keras 3's ``fit`` expects of it.

    Keras 3 hands this strategy two reductions that only ``MirroredStrategy`` accepts
    (keras-team/keras#20585, tensorflow/tensorflow#72388): a whole ``(images, masks)`` batch at
    once, to learn the input shapes, and each replica's scalar loss and metrics averaged over an
    ``axis=0`` that scalars lack. Each value is reduced on its own, scalars over the replicas only.
    """

    def reduce(self, reduce_op, value, axis):
        def reduce_one(one):
            local = self.experimental_local_results(one)[0] if isinstance(one, tf.distribute.DistributedValues) else one
            scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
            return super(KerasMultiWorkerMirroredStrategy, self).reduce(reduce_op, one, None if scalar else axis)

        return tf.nest.map_structure(reduce_one, value)


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
        return KerasMultiWorkerMirroredStrategy()
    raise ActivesegError(f"params.yaml: `train.distribute` is {name!r}; use one of {', '.join(DISTRIBUTE_STRATEGIES)}")


def is_chief(strategy: "tf.distribute.Strategy") -> bool:
    """Whether this process writes the outputs: always, except on a multi-worker cluster, where
    only the chief does (the ``chief`` task, else worker 0, as in TensorFlow's own convention)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None \
            or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def worker_path(path: str | Path, chief: bool) -> Iterator[Path]:
    """``path`` on the chief; on another worker the same name in a temporary folder, deleted after."""
    if chief:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="activeseg-worker-") as scratch:
        yield Path(scratch) / Path(path).name
