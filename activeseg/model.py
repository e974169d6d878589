"""The segmentation model: a ``segmentation_models`` U-Net with a Monte-Carlo dropout head.

``sm.Unet`` has no dropout, so the decoder's last features go through a dropout layer named
``mc_dropout`` before a new 1-channel sigmoid head. Plain prediction runs with dropout off; the
acquisition functions run the cheap head many times with dropout on over features computed once
(see :func:`split_at_dropout`), so T stochastic passes cost about one forward pass of the U-Net.
"""

from __future__ import annotations

from pathlib import Path

from activeseg.errors import ActivesegError
from activeseg.outputs import atomic_path
from activeseg.params import TrainParams
from activeseg.runtime import keras, segmentation_models

DROPOUT_LAYER = "mc_dropout"


def build_unet(params: TrainParams, size: int, channels: int) -> keras.Model:
    sm = segmentation_models()
    weights = params.encoder_weights
    if weights not in (None, "imagenet"):
        raise ActivesegError(f"params.yaml: `train.encoder_weights` is {weights!r}; use none or imagenet")
    if weights == "imagenet" and channels != 3:
        raise ActivesegError("params.yaml: imagenet encoder weights need preprocess.channels: 3")
    try:
        base = sm.Unet(params.backbone, encoder_weights=weights, input_shape=(size, size, channels),
                       classes=1, activation="sigmoid")
    except OSError as error:  # keras.utils.get_file raises URLError/OSError/Exception offline
        raise ActivesegError(f"train.encoder_weights: imagenet weights for {params.backbone} could not be "
                             f"downloaded ({error}); set train.encoder_weights: none offline") from None
    features = base.get_layer("final_conv").input
    dropped = keras.layers.Dropout(params.dropout, name=DROPOUT_LAYER)(features)
    logits = keras.layers.Conv2D(1, 3, padding="same", name="head_conv")(dropped)
    probabilities = keras.layers.Activation("sigmoid", name="probability", dtype="float32")(logits)
    return keras.Model(base.input, probabilities, name=f"unet_{params.backbone}")


def save_model(model: keras.Model, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        model.save(temporary)


def load_model(path: str | Path) -> keras.Model:
    path = Path(path)
    if not path.is_file():
        raise ActivesegError(f"{path}: model not found; run `dvc repro train` first or pass the right path")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises ValueError, OSError or zipfile errors on a bad file
        raise ActivesegError(f"{path}: not a readable Keras model ({type(error).__name__}); retrain it with "
                             "`dvc repro train`") from None


def split_at_dropout(model: keras.Model):
    """``(feature_model, head)``: the network up to the dropout layer, and a function applying the
    rest (dropout with ``training`` as given, then the head) to those features."""
    dropout = model.get_layer(DROPOUT_LAYER)
    feature_model = keras.Model(model.input, dropout.input)
    head_layers = model.layers[model.layers.index(dropout) + 1:]

    def head(features, training: bool):
        output = dropout(features, training=training)
        for layer in head_layers:
            output = layer(output)
        return output

    return feature_model, head
