"""`activeseg predict`: masks at the original size through exactly the training transform."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from activeseg.cli import main as cli_main
from activeseg.imageio import read_image, write_png
from activeseg.model import load_model
from activeseg.preprocess import Transform
from conftest import REPO_ROOT, project_env


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "new"
    folder.mkdir()
    write_png(folder / "wide_gray.png", rng.integers(0, 255, (50, 70), dtype=np.uint8))
    write_png(folder / "square_rgb.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image: skipped in a folder")
    tiff = tmp_path / "big.tif"
    cv2.imwrite(str(tiff), rng.integers(0, 65535, (96, 80, 3), dtype=np.uint16))
    return folder, tiff


def cli(*args):
    """Run ``activeseg`` in-process; returns the exit code (0 when it returned normally)."""
    try:
        cli_main([str(arg) for arg in args])
    except SystemExit as exit_:
        return exit_.code
    return 0


def test_masks_at_original_size_through_the_training_transform(tmp_path, images, untrained_model):
    folder, tiff = images
    model_path, stats = untrained_model
    out = tmp_path / "out"
    assert cli("predict", "--model", model_path, "--stats", stats, folder, tiff, "--out", out,
               "--probabilities", "--overlays") == 0
    expected_shapes = {"wide_gray": (50, 70), "square_rgb": (32, 32), "big": (96, 80)}
    assert sorted(p.stem for p in (out / "masks").iterdir()) == sorted(expected_shapes)
    transform, model = Transform.load(stats), load_model(model_path)
    for stem, shape in expected_shapes.items():
        source = folder / f"{stem}.png" if stem != "big" else tiff
        mask = read_image(out / "masks" / f"{stem}.png")
        probability = read_image(out / "probabilities" / f"{stem}.png")
        assert mask.shape == shape and probability.shape == shape
        assert set(np.unique(mask)) <= {0, 255}
        assert read_image(out / "overlays" / f"{stem}.png").shape == shape + (3,)
        # the same numbers as the training transform followed by the model, resized back
        model_input = transform.normalize(transform.resize_image(read_image(source))[None])
        expected = cv2.resize(model.predict(model_input, verbose=0)[0, ..., 0], shape[::-1],
                              interpolation=cv2.INTER_LINEAR)
        assert np.abs(probability.astype(float) - expected * 255).max() <= 1.0
        assert np.array_equal(mask > 0, expected > 0.5) or np.mean((mask > 0) != (expected > 0.5)) < 0.01
    # at the model's own size nothing is resized: the mask is exactly the thresholded prediction
    square = transform.normalize(read_image(folder / "square_rgb.png")[None])
    exact = model.predict(square, verbose=0)[0, ..., 0] > 0.5
    assert np.array_equal(read_image(out / "masks" / "square_rgb.png") > 0, exact)


def test_intensity_scaling_of_the_stats_applies_to_new_images(tmp_path, untrained_model):
    """With preprocess.intensity minmax, a 12-bit image predicts as its stretched 8-bit self."""
    model_path, _ = untrained_model
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps(Transform(32, 3, "zscore", (0.4, 0.5, 0.45), (0.2, 0.25, 0.3), "minmax").to_json()))
    stretched = np.random.default_rng(5).integers(0, 256, (32, 32), dtype=np.uint8)
    stretched[0, :2] = (0, 255)
    write_png(tmp_path / "in" / "twelve_bit.png", stretched.astype(np.uint16) + 1000)  # levels 1000..1255
    write_png(tmp_path / "in" / "eight_bit.png", stretched)
    assert cli("predict", "--model", model_path, "--stats", stats, tmp_path / "in", "--out", tmp_path / "out",
               "--probabilities", "--overlays") == 0
    twelve, eight = (read_image(tmp_path / "out" / "overlays" / f"{stem}.png") for stem in ("twelve_bit", "eight_bit"))
    assert np.mean(twelve != eight) < 0.01  # the overlay shows the stretched image (masks may flip a pixel)
    twelve, eight = (read_image(tmp_path / "out" / "probabilities" / f"{stem}.png").astype(int)
                     for stem in ("twelve_bit", "eight_bit"))
    assert np.abs(twelve - eight).max() <= 1  # same input; one batch position may round differently


def test_threshold_changes_the_mask(tmp_path, images, untrained_model):
    folder, _ = images
    model_path, stats = untrained_model
    for threshold in ("0.01", "0.99"):
        assert cli("predict", "--model", model_path, "--stats", stats, folder / "square_rgb.png",
                   "--out", tmp_path / threshold, "--threshold", threshold) == 0
    low = read_image(tmp_path / "0.01" / "masks" / "square_rgb.png")
    high = read_image(tmp_path / "0.99" / "masks" / "square_rgb.png")
    assert (low > 0).sum() > (high > 0).sum()


@pytest.mark.parametrize("problem", ["corrupt", "missing", "empty_folder", "unsupported", "same_name",
                                     "missing_model", "bad_stats", "wrong_stats"])
def test_bad_input_is_one_line_naming_the_file_and_writes_nothing(tmp_path, images, untrained_model, problem,
                                                                   capsys):
    folder, tiff = images
    model_path, stats = untrained_model
    inputs, named = [folder], None
    if problem == "corrupt":
        named = folder / "broken.png"
        named.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    elif problem == "missing":
        named = tmp_path / "nowhere.png"
        inputs.append(named)
    elif problem == "empty_folder":
        named = tmp_path / "empty"
        named.mkdir()
        inputs = [named]
    elif problem == "unsupported":
        named = folder / "notes.txt"
        inputs = [named]
    elif problem == "same_name":
        named = tmp_path / "wide_gray.jpg"
        cv2.imwrite(str(named), np.zeros((8, 8), np.uint8))
        inputs.append(named)
    elif problem == "missing_model":
        model_path = named = tmp_path / "no_model.keras"
    elif problem == "bad_stats":
        stats = named = tmp_path / "stats.json"
        stats.write_text("{not json")
    elif problem == "wrong_stats":
        stats = named = tmp_path / "stats.json"
        stats.write_text(Transform(64, 1, "unit", (0.0,), (1.0,)).to_json().__repr__().replace("'", '"'))
    out = tmp_path / "out"
    assert cli("predict", "--model", model_path, "--stats", stats, *inputs, "--out", out) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and str(named) in errors[0], errors
    assert not out.exists()


def test_existing_output_folder_is_left_as_it_was_on_error(tmp_path, images, untrained_model, capsys):
    folder, _ = images
    model_path, stats = untrained_model
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "earlier.png").write_bytes(b"kept")
    (folder / "zz_broken.png").write_bytes(b"garbage")  # sorted last: fails after the others predicted
    assert cli("predict", "--model", model_path, "--stats", stats, folder, "--out", out, "--batch-size", "1") == 2
    assert "zz_broken.png" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == ["earlier.png", "masks"]


def test_console_script_help_lists_predict():
    result = subprocess.run([sys.executable, "-m", "activeseg.cli", "predict", "--help"], cwd=REPO_ROOT,
                            env=project_env(REPO_ROOT), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--probabilities" in result.stdout and "original size" in result.stdout
