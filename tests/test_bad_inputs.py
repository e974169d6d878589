"""The bad-input matrix: every bad input stops with one `error:` line naming the file, a non-zero
exit and nothing half-written; params.yaml is checked by every stage before it touches any data.

The stage scripts run as subprocesses (as DVC runs them) in a bare folder holding params.yaml
and data/raw, with this checkout's package on PYTHONPATH: no git, no DVC, no TensorFlow work.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import REPO_ROOT, project_env, tiny_params_dict

EXIT_USER_ERROR = 2


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def image(seed: int = 0, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def mask(size: int = 40, value: int = 255) -> np.ndarray:
    result = np.zeros((size, size), np.uint8)
    result[5:20, 5:20] = value
    return result


def stage_command(stage: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "stages" / f"{stage}.py"), "--params", "params.yaml", *args]


def run_stage(folder: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    env = project_env(folder)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(stage_command(stage, *args), cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The stage failed as a user error: exit 2 and exactly one `error:` line, no traceback."""
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


def nothing_written(folder: Path) -> list[str]:
    """Files under data/ other than the raw inputs: must be empty after a failed ingest."""
    return sorted(str(path.relative_to(folder)) for path in (folder / "data").rglob("*")
                  if "raw" not in path.relative_to(folder / "data").parts[:1])


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict()))
    (tmp_path / "data" / "raw").mkdir(parents=True)
    return tmp_path


def mask_without_image(raw: Path) -> str:
    write_image(raw / "images" / "a.png", image())
    write_image(raw / "masks" / "b.png", mask())
    return "masks/b.png"


def corrupt_image(raw: Path) -> str:
    write_image(raw / "images" / "a.png", image())
    (raw / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a whole png")
    return "images/b.png"


def corrupt_mask(raw: Path) -> str:
    write_image(raw / "images" / "a.png", image())
    (raw / "masks").mkdir()
    (raw / "masks" / "a.tif").write_bytes(b"II*\x00garbage")
    return "masks/a.tif"


def size_mismatch(raw: Path) -> str:
    write_image(raw / "images" / "a.png", image(size=40))
    write_image(raw / "masks" / "a.png", mask(size=32))
    return "masks/a.png"


def empty_images_folder(raw: Path) -> str:
    (raw / "images").mkdir()
    (raw / "images" / "notes.txt").write_text("not an image")
    return ""


def labelme_file(raw: Path, image_path: str, name: str = "labels/a.json") -> Path:
    path = raw / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "5.5.0", "flags": {}, "imagePath": image_path, "imageData": None,
                                "imageHeight": 40, "imageWidth": 40,
                                "shapes": [{"label": "cell", "shape_type": "polygon", "flags": {},
                                            "points": [[2, 2], [30, 4], [20, 30]]}]}))
    return path


def labelme_path_escaping_its_folder(raw: Path) -> str:
    write_image(raw.parent.parent / "outside.png", image())  # a real file, outside data/raw
    labelme_file(raw, "../../../outside.png")
    return "labels/a.json"


def labelme_absolute_path(raw: Path) -> str:
    labelme_file(raw, str(raw.parent.parent.absolute() / "outside.png"))
    return "labels/a.json"


def labelme_image_missing(raw: Path) -> str:
    labelme_file(raw, "a.png")
    return "labels/a.json"


def labelme_not_json(raw: Path) -> str:
    labelme_file(raw, "a.png").write_text('{"shapes": [')
    return "labels/a.json"


def duplicate_ids(raw: Path) -> str:
    write_image(raw / "images" / "a.png", image())
    write_image(raw / "images" / "a.jpg", image())
    return "images/a"


def unreadable_pixel_type(raw: Path) -> str:
    write_image(raw / "images" / "a.tif", np.zeros((40, 40), np.float32))
    return "images/a.tif"


DATA_CASES = [mask_without_image, corrupt_image, corrupt_mask, size_mismatch, empty_images_folder,
              duplicate_ids, unreadable_pixel_type, labelme_path_escaping_its_folder, labelme_absolute_path,
              labelme_image_missing, labelme_not_json]


@pytest.mark.parametrize("make_case", DATA_CASES, ids=[case.__name__ for case in DATA_CASES])
def test_bad_raw_data_stops_ingest_naming_the_file(folder, make_case):
    named = make_case(folder / "data" / "raw")
    error = one_error_line(run_stage(folder, "ingest", "--out", "data/ingested"))
    assert f"data/raw/{named}".rstrip("/") in error
    assert nothing_written(folder) == []


def test_grey_level_mask_is_binarised_and_reported(folder):
    """Not an error by design: masks become 0/255 by `pixel > 0`, and ingest names the ones it changed."""
    raw = folder / "data" / "raw"
    for index in range(3):
        write_image(raw / "images" / f"im{index}.png", image(index))
        write_image(raw / "masks" / f"im{index}.png", mask(value=128 if index == 1 else 255))
    result = run_stage(folder, "ingest", "--out", "data/ingested")
    assert result.returncode == 0, result.stderr
    assert "binarised" in result.stdout and "im1" in result.stdout
    written = cv2.imread(str(folder / "data" / "ingested" / "masks" / "im1.png"), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(written)) == {0, 255}


def test_no_mask_at_all_stops_split(folder):
    raw = folder / "data" / "raw"
    for index in range(4):
        write_image(raw / "images" / f"im{index}.png", image(index))
    assert run_stage(folder, "ingest", "--out", "data/ingested").returncode == 0
    error = one_error_line(run_stage(folder, "split", "--ingested", "data/ingested", "--out", "data/split/split.csv"))
    assert "labeled" in error
    assert not (folder / "data" / "split").exists()


def test_predefined_split_csv_naming_an_unknown_id_stops_ingest(folder):
    raw = folder / "data" / "raw"
    for index in range(3):
        write_image(raw / "images" / f"im{index}.png", image(index))
        write_image(raw / "masks" / f"im{index}.png", mask())
    (raw / "split.csv").write_text("id,split\nim0,train\nim1,val\nim9,test\n")
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["split"]["predefined"] = "split.csv"
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    error = one_error_line(run_stage(folder, "ingest", "--out", "data/ingested"))
    assert "data/raw/split.csv: line 4: id 'im9' is not in the data" in error
    assert nothing_written(folder) == []


BAD_PARAMS = {
    "text for a number": ({"epochs": "two"}, "`epochs` must be a whole number"),
    "number out of range": ({"preprocess.size": 50}, "`preprocess.size` must be a multiple of 32"),
    "unknown key": ({"train.bakbone": "resnet18"}, "`train.bakbone` is not a known parameter"),
    "unknown backbone": ({"train.backbone": "resnet999"}, "`train.backbone` must be one of"),
    "bool as text": ({"split.simulate": "yes please"}, "`split.simulate` must be true, false or auto"),
    "unknown strategy": ({"train.distribute": "tpu_pod"}, "`train.distribute` must be one of"),
    "section not a mapping": ({"tracking": "off"}, "`tracking` must be a mapping"),
    "predefined split leaving raw_dir": ({"split.predefined": "../split.csv"}, "`split.predefined` is '../split.csv'"),
    "predefined split not a CSV": ({"split.predefined": "split.txt"}, "`split.predefined` is 'split.txt'"),
    "predefined split with counts": ({"split.predefined": "folders", "split.val_count": 4},
                                     "`split.val_count` and split.test_count must be 0 with split.predefined"),
}

def stage_args_from_dvc_yaml() -> dict[str, list[str]]:
    """Each stage script's arguments, as dvc.yaml runs it (``python stages/<name>.py …``)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    found = {}
    for stage in stages.values():
        words = shlex.split(stage["cmd"])
        if len(words) >= 2 and words[0] == "python" and words[1].startswith("stages/"):
            found[Path(words[1]).stem] = words[2:]
    return found


STAGE_ARGS = stage_args_from_dvc_yaml()


@pytest.mark.parametrize("case", BAD_PARAMS, ids=list(BAD_PARAMS))
def test_bad_params_value_or_type_names_the_key(folder, case):
    from activeseg.errors import ActivesegError
    from activeseg.params import load_params

    overrides, expected = BAD_PARAMS[case]
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict(**{key.replace(".", "__"): value
                                                                          for key, value in overrides.items()})))
    with pytest.raises(ActivesegError) as raised:
        load_params(folder / "params.yaml")
    message = str(raised.value)
    assert "\n" not in message and expected in message and "params.yaml" in message


def test_every_stage_script_is_in_the_params_check():
    """Every stage script is run by dvc.yaml, so the check below covers each of them."""
    assert {path.stem for path in (REPO_ROOT / "stages").glob("*.py")} == set(STAGE_ARGS)


@pytest.mark.slow
def test_every_stage_checks_params_before_touching_data(folder):
    """With bad params and no data at all, each stage must report the params, not a missing file:
    params.yaml is validated before any heavy work. (All stages run at once to save time.)"""
    (folder / "params.yaml").write_text((folder / "params.yaml").read_text().replace("epochs: 1", "epochs: one"))
    env = project_env(folder)
    env["PYTHONPATH"] = str(REPO_ROOT)
    processes = {stage: subprocess.Popen(stage_command(stage, *args), cwd=folder, env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for stage, args in STAGE_ARGS.items()}
    for stage, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        error = one_error_line(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        assert "params.yaml: `epochs` must be a whole number" in error, f"{stage}: {error}"
    assert not (folder / "models").exists() and not (folder / "metrics").exists()
    assert nothing_written(folder) == []


def test_params_yaml_syntax_error_names_the_line(folder):
    (folder / "params.yaml").write_text("epochs: 1\nseed: [42\n")
    error = one_error_line(run_stage(folder, "split", *STAGE_ARGS["split"]))
    assert "params.yaml: not valid YAML at line" in error
