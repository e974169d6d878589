"""The segmentation models: U-Nets with a Monte-Carlo dropout head, single stage or cascade.

Architectures (``train.architecture``):

- ``sm_unet``: a ``segmentation_models`` U-Net with the encoder ``train.backbone``, whose encoder
  starts from scratch, from ImageNet (needs a network) or from a local weights file;
- ``unet_plain``: the classic 4-level Ronneberger U-Net (two 3x3 convolutions per level, filters
  doubling at each of the 4 poolings, same padding, batch norm), small and good for grayscale.

With ``train.cascade`` a coarse U-Net first segments the image at 1/``cascade_factor`` resolution;
its upsampled probability map is stacked onto the image as one more channel for a second U-Net
at full resolution (see :mod:`activeseg.training` for the two-stage training).

Every model ends in a dropout layer named ``mc_dropout`` before a 1-channel sigmoid head. Plain
prediction runs with dropout off; the acquisition functions run the cheap head many times with
dropout on over features computed once (see :func:`split_at_dropout`). All models take inputs of
any size divisible by :func:`size_divisor`, so training may use random crops.

``train.dropout_placement`` puts more dropout layers (same rate, names ending ``_dropout``)
through the network, as Di Scandalea et al. 2019 (arXiv 1907.05143, section 2.2) and their code
(neuropoly/deep-active-learning, ``unet_full_bn``: rate 0.2 after each pooling, in the bottleneck
and in the decoder) do, so that Monte-Carlo passes of the whole network (:func:`mc_network`)
sample what the features do not know, not only a linear read-out of fixed features:
``encoder``: after each encoder stage and after the bottleneck; ``encoder_decoder``: also after
each decoder stage but the last (whose output the head's ``mc_dropout`` already drops). For the
plain U-Net they follow each pooling (the skips leave before it, as in the reference); for the
sm U-Net they follow the layers its decoder takes skips from (so they drop the skip too)
(``sm.Backbones.get_feature_layers``) and the layer feeding the first decoder stage, inserted by
re-calling its graph (``keras.models.clone_model`` with a ``call_function``).

Batch norm's moving statistics use ``train.batchnorm_momentum``: Keras' default (0.99) needs
hundreds of steps to forget its initial values, far more than a small data set gives, and the
model then validates with statistics that do not match its weights.
"""

from __future__ import annotations

from pathlib import Path

from activeseg.errors import ActivesegError
from activeseg.outputs import atomic_path
from activeseg.params import TrainParams, size_divisor  # noqa: F401  (size_divisor: re-exported)
from activeseg.runtime import keras, segmentation_models

DROPOUT_LAYER = "mc_dropout"
PLAIN_LEVELS = 4  # poolings of the classic U-Net




def _set_batchnorm_momentum(model: keras.Model, momentum: float) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def _encoder_weights(params: TrainParams, channels: int):
    weights = params.encoder_weights
    if weights is None:
        return None
    if params.architecture != "sm_unet":
        raise ActivesegError(f"params.yaml: `train.encoder_weights` is {weights!r} but train.architecture "
                             f"{params.architecture} has no pretrained encoder; set it to none")
    if channels != 3:
        raise ActivesegError("params.yaml: pretrained encoder weights need preprocess.channels: 3 "
                             "(or set train.encoder_weights: none)")
    if weights == "imagenet":
        return weights
    path = Path(weights)
    if not path.is_file():
        raise ActivesegError(f"{path}: encoder weights file not found; set train.encoder_weights to none, "
                             "imagenet or the path of a Keras weights file of the encoder")
    return str(path)


def _encoder_dropout(params: TrainParams) -> bool:
    return params.dropout_placement in ("encoder", "encoder_decoder")


def _decoder_dropout(params: TrainParams) -> bool:
    return params.dropout_placement == "encoder_decoder"


def _sm_features(base: keras.Model, params: TrainParams) -> keras.Model:
    """``base`` (an sm U-Net) up to the input of its ``final_conv``, with a dropout layer after
    each layer that ``params.dropout_placement`` names."""
    sm = segmentation_models()
    after = set()
    if _encoder_dropout(params):
        after |= set(sm.Backbones.get_feature_layers(params.backbone, n=4))
        after.add(base.get_layer("decoder_stage0_upsampling").input._keras_history.operation.name)
    if _decoder_dropout(params):
        after |= {f"decoder_stage{stage}b_relu" for stage in range(4)}  # stage 4 is the head's input

    head_input = {}

    def call_function(layer, *args, **kwargs):
        if layer.name == "final_conv":
            head_input["features"] = args[0]
        output = layer(*args, **kwargs)
        if layer.name in after:
            return keras.layers.Dropout(params.dropout, name=f"{layer.name}_dropout")(output)
        return output

    # clone_function returns each layer itself: the new graph shares the (fresh) layers of base
    clone = keras.models.clone_model(base, clone_function=lambda layer: layer, call_function=call_function)
    return keras.Model(clone.input, head_input["features"], name=f"{params.backbone}_unet_features")


def _sm_unet(params: TrainParams, channels: int) -> keras.Model:
    """The sm U-Net up to (without) its segmentation head: image → decoder features."""
    sm = segmentation_models()
    weights = _encoder_weights(params, channels)
    try:
        base = sm.Unet(params.backbone, encoder_weights=weights, input_shape=(None, None, channels),
                       classes=1, activation="sigmoid")
    except Exception as error:  # noqa: BLE001 - keras.utils.get_file raises a bare Exception offline
        if weights == "imagenet":
            raise ActivesegError(f"train.encoder_weights: imagenet weights for {params.backbone} could not be "
                                 f"downloaded ({' '.join(str(error).split())[:160]}); without a network set "
                                 "train.encoder_weights: none or a local weights file") from None
        if weights is not None:
            raise ActivesegError(f"{weights}: not readable as {params.backbone} encoder weights "
                                 f"({type(error).__name__}); use a Keras weights file of that encoder") from None
        raise
    return _sm_features(base, params)


def _conv_block(x, filters: int, name: str):
    for index in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                                name=f"{name}_conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{index}")(x)
    return x


def _plain_unet(params: TrainParams, channels: int) -> keras.Model:
    """The classic U-Net up to (without) its 1x1 output layer: image → last decoder features."""
    _encoder_weights(params, channels)  # refuses any: this U-Net has no pretrained encoder
    inputs = keras.Input((None, None, channels))
    x, skips = inputs, []
    for level in range(PLAIN_LEVELS):
        x = _conv_block(x, params.plain_filters * 2 ** level, f"down{level + 1}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{level + 1}")(x)
        if _encoder_dropout(params):
            x = keras.layers.Dropout(params.dropout, name=f"pool{level + 1}_dropout")(x)
    x = _conv_block(x, params.plain_filters * 2 ** PLAIN_LEVELS, "bottom")
    if _encoder_dropout(params):
        x = keras.layers.Dropout(params.dropout, name="bottom_dropout")(x)
    for level in reversed(range(PLAIN_LEVELS)):
        filters = params.plain_filters * 2 ** level
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level + 1}_transpose")(x)
        x = keras.layers.Concatenate(name=f"up{level + 1}_concat")([x, skips[level]])
        x = _conv_block(x, filters, f"up{level + 1}")
        if _decoder_dropout(params) and level > 0:   # level 0's output is the head's input
            x = keras.layers.Dropout(params.dropout, name=f"up{level + 1}_dropout")(x)
    return keras.Model(inputs, x, name="plain_unet_features")


def _features(params: TrainParams, channels: int) -> keras.Model:
    features = _sm_unet(params, channels) if params.architecture == "sm_unet" else _plain_unet(params, channels)
    _set_batchnorm_momentum(features, params.batchnorm_momentum)
    return features


def _with_head(inputs, features, params: TrainParams, name: str, prefix: str = "") -> keras.Model:
    dropped = keras.layers.Dropout(params.dropout, name=f"{prefix}{DROPOUT_LAYER}")(features)
    # the head stays float32 under train.precision mixed_bfloat16: the loss sees float32 probabilities
    logits = keras.layers.Conv2D(1, 3, padding="same", name=f"{prefix}head_conv", dtype="float32")(dropped)
    probabilities = keras.layers.Activation("sigmoid", name=f"{prefix}probability", dtype="float32")(logits)
    return keras.Model(inputs, probabilities, name=name)


def _name(params: TrainParams) -> str:
    return f"unet_{params.backbone}" if params.architecture == "sm_unet" else "unet_plain"


def build_unet(params: TrainParams, size: int | None, channels: int) -> keras.Model:
    """The single-stage model: image → foreground probability, with the ``mc_dropout`` layer.
    ``size`` None accepts any side divisible by :func:`size_divisor` (training uses crops)."""
    inputs = keras.Input((size, size, channels), name="image")
    return _with_head(inputs, _features(params, channels)(inputs), params, _name(params))


def build_coarse(params: TrainParams, channels: int) -> keras.Model:
    """The cascade's first stage: full-size image → probability computed at 1/``cascade_factor``
    resolution and upsampled back (bilinear) to the input size."""
    factor = params.cascade_factor
    inputs = keras.Input((None, None, channels), name="image")
    small = keras.layers.AveragePooling2D(factor, name="coarse_downsample")(inputs)
    coarse = _with_head(small, _features(params, channels)(small), params, "coarse_small", prefix="coarse_")
    upsampled = keras.layers.UpSampling2D(factor, interpolation="bilinear", name="coarse_upsample")(coarse(small))
    return keras.Model(inputs, upsampled, name="coarse_stage")


def build_cascade(params: TrainParams, channels: int, coarse: keras.Model) -> keras.Model:
    """The full cascade: the (frozen) coarse stage's probability map joins the image as an extra
    channel of the full-resolution U-Net, which ends in the ``mc_dropout`` head."""
    coarse.trainable = False
    inputs = keras.Input((None, None, channels), name="image")
    stacked = keras.layers.Concatenate(name="image_and_coarse")([inputs, coarse(inputs)])
    fine = params if params.encoder_weights is None else _without_encoder_weights(params)
    return _with_head(inputs, _features(fine, channels + 1)(stacked), params, f"cascade_{_name(params)}")


def _without_encoder_weights(params: TrainParams) -> TrainParams:
    import dataclasses

    return dataclasses.replace(params, encoder_weights=None)  # the fine stage has channels + 1 inputs


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


def mc_network(model: keras.Model) -> keras.Model:
    """``model`` re-called with every dropout layer on and batch norm in inference mode (sharing
    its weights): one call is one Monte-Carlo sample of the whole network (Gal & Ghahramani 2016;
    Di Scandalea et al. 2019). Outputs ``[features the mc_dropout layer receives, probability]``.
    ``model(x, training=True)`` would not do: batch norm would then use the batch's statistics.
    Call it with ``training`` unset (not through ``predict``, which passes ``training=False``
    down and turns the dropout off again)."""
    captured = {}

    def call_function(layer, *args, **kwargs):
        # both explicit: an explicit training=True sets the call context for the layers after it
        if isinstance(layer, keras.layers.Dropout):
            kwargs["training"] = True
        elif isinstance(layer, keras.layers.BatchNormalization):
            kwargs["training"] = False
        if layer.name == DROPOUT_LAYER:
            captured["features"] = args[0]
        return layer(*args, **kwargs)

    # cloned through an uncompiled view of the same graph: cloning a compiled model would also
    # rebuild its compile config, and the project's loss function is not deserialisable
    uncompiled = keras.Model(model.input, model.output)
    clone = keras.models.clone_model(uncompiled, clone_function=lambda layer: layer, call_function=call_function,
                                     recursive=True)
    return keras.Model(clone.input, [captured["features"], clone.output], name=f"{model.name}_mc")
