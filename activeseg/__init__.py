"""activeseg: a DVC pipeline that trains a U-Net for binary segmentation and asks, by deep active
learning, for the masks that would help it most.

The public API is small on purpose: stage scripts under ``stages/`` and the ``activeseg`` console
script use the modules below; everything else is an implementation detail.

- ``activeseg.params``: params.yaml, typed and validated.
- ``activeseg.errors``: the one-line user errors every entry point reports.
- ``activeseg.outputs``: atomic writes, so a failed stage leaves no half-written output.
- ``activeseg.synthetic``: the built-in synthetic data set.
- ``activeseg.ingest`` / ``activeseg.split``: raw data to a canonical, validated form and a
  sticky train/val/test/pool split.
- ``activeseg.plan``: the data's fingerprint decides the params left at ``auto`` (``data/plan.json``).
- ``activeseg.preprocess``: the one transform (size, channels, normalisation) every consumer uses.
- ``activeseg.augment``: albumentations pipelines from params.
- ``activeseg.model`` / ``activeseg.training``: the U-Net and how it is trained.
- ``activeseg.metrics``: Dice, F1, precision, recall, IoU.
- ``activeseg.acquisition``: scoring the unlabeled pool.
- ``activeseg.rescue``: Labelme files edited inside the query export, moved to where ingest reads them.
- ``activeseg.evaluation``: test-set metrics, the threshold curve and overlays.
- ``activeseg.predict``: masks for new images at their original size (``activeseg predict``).
- ``activeseg.tracking``: MLflow runs and their tags.
"""

__version__ = "0.1.0"
