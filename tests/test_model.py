"""Model choices: every offered backbone and the plain U-Net survive save → load → predict, the
cascade is wired as documented, encoder weights come from nowhere, a local file or (online only)
ImageNet, and every architecture keeps the ``mc_dropout`` layer the acquisition functions use."""

from __future__ import annotations

import dataclasses
import socket

import numpy as np
import pytest

from activeseg.errors import ActivesegError
from activeseg.model import (DROPOUT_LAYER, build_cascade, build_coarse, build_unet, load_model, save_model,
                             size_divisor, split_at_dropout)
from activeseg.params import BACKBONES, TrainParams
from activeseg.runtime import keras

PLAIN = TrainParams(architecture="unet_plain", plain_filters=4)


def _round_trip(model, tmp_path, side: int, channels: int):
    images = np.random.default_rng(0).random((2, side, side, channels), np.float32)
    before = model.predict(images, verbose=0)
    save_model(model, tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    after = loaded.predict(images, verbose=0)
    assert after.shape == (2, side, side, 1)
    np.testing.assert_allclose(after, before, atol=1e-5)
    return loaded


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_survives_save_load_predict(backbone, tmp_path):
    model = build_unet(TrainParams(backbone=backbone), 32, channels=3)
    loaded = _round_trip(model, tmp_path, side=32, channels=3)
    assert loaded.get_layer(DROPOUT_LAYER).rate == pytest.approx(0.3)


def test_plain_unet_is_the_classic_four_level_layout(tmp_path):
    model = build_unet(PLAIN, None, channels=1)
    pools = [layer for layer in model.get_layer("plain_unet_features").layers
             if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 4
    _round_trip(model, tmp_path, side=16 * 2, channels=1)


def test_cascade_feeds_the_coarse_probability_to_the_full_resolution_net(tmp_path):
    params = dataclasses.replace(PLAIN, cascade=True, cascade_factor=2)
    assert size_divisor(params) == 32
    coarse = build_coarse(params, channels=1)
    model = build_cascade(params, 1, coarse)
    assert model.get_layer("coarse_stage").trainable is False
    assert model.get_layer("image_and_coarse").output.shape[-1] == 2  # image + coarse probability
    loaded = _round_trip(model, tmp_path, side=32, channels=1)
    features, head = split_at_dropout(loaded)
    images = np.zeros((1, 32, 32, 1), np.float32)
    stochastic = [np.asarray(head(features(images), training=True)) for _ in range(2)]
    assert stochastic[0].shape == (1, 32, 32, 1)


def test_batchnorm_momentum_comes_from_params():
    model = build_unet(dataclasses.replace(PLAIN, batchnorm_momentum=0.8), None, channels=1)
    norms = [layer for layer in model.get_layer("plain_unet_features").layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == pytest.approx(0.8) for layer in norms)


def test_imagenet_weights_offline_fail_with_one_line(monkeypatch, tmp_path):
    import keras.src.backend.config as keras_config

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras-home"))  # no cached weights

    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    monkeypatch.setattr(socket.socket, "connect", unreachable)
    with pytest.raises(ActivesegError) as error:
        build_unet(TrainParams(backbone="resnet18", encoder_weights="imagenet"), None, channels=3)
    message = str(error.value)
    assert "\n" not in message and "imagenet" in message and "train.encoder_weights: none" in message


def test_encoder_weights_from_a_local_file(tmp_path):
    from activeseg.runtime import segmentation_models

    sm = segmentation_models()
    get_backbone = sm.inject_global_submodules(sm.Backbones.get_backbone)  # as sm.Unet calls it
    encoder = get_backbone("resnet18", input_shape=(None, None, 3), weights=None, include_top=False)
    encoder.save_weights(tmp_path / "resnet18.weights.h5")
    model = build_unet(TrainParams(backbone="resnet18", encoder_weights=str(tmp_path / "resnet18.weights.h5")),
                       None, channels=3)
    features = model.get_layer("resnet18_unet_features")
    np.testing.assert_array_equal(features.get_layer("conv0").get_weights()[0],
                                  encoder.get_layer("conv0").get_weights()[0])


@pytest.mark.parametrize("weights, channels, fragment", [
    ("missing.weights.h5", 3, "not found"),
    ("imagenet", 1, "channels: 3"),
])
def test_bad_encoder_weights_are_one_line_errors(weights, channels, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ActivesegError, match=fragment):
        build_unet(TrainParams(backbone="resnet18", encoder_weights=weights), None, channels=channels)


def test_plain_unet_refuses_encoder_weights():
    with pytest.raises(ActivesegError, match="no pretrained encoder"):
        build_unet(dataclasses.replace(PLAIN, encoder_weights="imagenet"), None, channels=3)


def test_unreadable_weights_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.weights.h5"
    bad.write_text("not hdf5")
    with pytest.raises(ActivesegError, match="bad.weights.h5"):
        build_unet(TrainParams(backbone="resnet18", encoder_weights=str(bad)), None, channels=3)


def _dropout_names(model) -> list[str]:
    features = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    return [layer.name for layer in features.layers if isinstance(layer, keras.layers.Dropout)]


@pytest.mark.parametrize("architecture", ["unet_plain", "sm_unet"])
def test_dropout_placement_puts_dropout_through_the_network(architecture, tmp_path):
    params = dataclasses.replace(PLAIN, architecture=architecture)
    head = _dropout_names(build_unet(params, None, channels=1))
    encoder = _dropout_names(build_unet(dataclasses.replace(params, dropout_placement="encoder"), None, 1))
    both = build_unet(dataclasses.replace(params, dropout_placement="encoder_decoder"), None, 1)
    assert head == []                                   # the head's mc_dropout only, outside the features
    assert len(encoder) == 5                            # 4 encoder stages and the bottleneck
    assert set(encoder) < set(_dropout_names(both)) and len(_dropout_names(both)) == 5 + 4 - (architecture == "unet_plain")
    loaded = _round_trip(both, tmp_path, side=32, channels=1)
    assert _dropout_names(loaded) == _dropout_names(both)


@pytest.mark.parametrize("architecture", ["unet_plain", "sm_unet"])
def test_mc_network_samples_the_features_only_with_dropout_inside(architecture):
    """Whole-network passes: batch norm stays in inference mode (no dropout: exactly the plain
    prediction), and the features reaching the head vary only where dropout is in the network."""
    from activeseg.model import mc_network

    images = np.random.default_rng(1).random((3, 32, 32, 1), np.float32)
    params = dataclasses.replace(PLAIN, architecture=architecture, dropout=0.5)
    no_dropout = build_unet(dataclasses.replace(params, dropout=0.0, dropout_placement="encoder"), None, 1)
    _, probability = mc_network(no_dropout)(images)
    np.testing.assert_allclose(probability, no_dropout.predict(images, verbose=0), atol=1e-5)
    for placement, features_vary in (("head", False), ("encoder", True)):
        sampler = mc_network(build_unet(dataclasses.replace(params, dropout_placement=placement), None, 1))
        (first, one), (second, other) = sampler(images), sampler(images)
        assert np.abs(np.asarray(one) - np.asarray(other)).max() > 1e-4       # the head's dropout is on
        assert (np.abs(np.asarray(first) - np.asarray(second)).max() > 1e-4) == features_vary
