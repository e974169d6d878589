"""The COCO reader: masks as pycocotools draws them, CVAT's and Label Studio's exports, bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pycocotools.coco
import pycocotools.mask as mask_utils
import pytest

from activeseg.errors import ActivesegError
from activeseg.ingest import ingest
from activeseg.params import IngestParams

HEIGHT, WIDTH = 32, 40  # not square: a transposed RLE cannot pass


def save_image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8))


def blob(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[top:bottom, left:right] = 1
    mask[top, left] = 0  # not symmetric under transposition
    return mask


def compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def uncompressed(mask: np.ndarray) -> dict:
    """COCO's list form: run lengths in column-major order, starting with a run of zeros."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return {"size": [HEIGHT, WIDTH], "counts": ([0] if flat[0] else []) + runs}


def generated_file(raw: Path) -> Path:
    """Two images, polygons and both RLE forms, two categories and an ignored annotation."""
    for name in ("a.png", "b.png"):
        save_image(raw / "images" / name)
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[2, 2, 20, 3, 8, 25]]},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": compressed(blob(20, 25, 30, 38))},
        {"id": 3, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": [[30, 2, 38, 2, 38, 10, 30, 10]]},
        {"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 1, "segmentation": uncompressed(blob(3, 5, 14, 30))},
        {"id": 5, "image_id": 2, "category_id": 1, "iscrowd": 0, "ignore": 1,
         "segmentation": [[0, 20, 10, 20, 10, 31, 0, 31]]},
    ]
    document = {"images": [{"id": 1, "file_name": "a.png", "height": HEIGHT, "width": WIDTH},
                           {"id": 2, "file_name": "b.png", "height": HEIGHT, "width": WIDTH}],
                "annotations": annotations,
                "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "debris"}]}
    path = raw / "instances.json"
    path.write_text(json.dumps(document))
    return path


def read_mask(out: Path, folder: str, image_id: str) -> np.ndarray:
    return cv2.imread(str(out / folder / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)


def expected_union(path: Path, image_id: int, category_names: list[str], ignored: bool = False) -> np.ndarray:
    """The union of pycocotools' own annToMask over the chosen annotations."""
    api = pycocotools.coco.COCO(str(path))
    categories = api.getCatIds(catNms=category_names)
    union = np.zeros((HEIGHT, WIDTH), bool)
    for annotation in api.loadAnns(api.getAnnIds(imgIds=[image_id], catIds=categories)):
        if (annotation.get("ignore") == 1) == ignored:
            union |= api.annToMask(annotation).astype(bool)
    return union


@pytest.mark.parametrize("categories, names", [("all", ["cell", "debris"]), (["cell"], ["cell"])])
def test_masks_equal_the_union_of_pycocotools_ann_to_mask(tmp_path, categories, names):
    path = generated_file(tmp_path / "raw")
    manifest = ingest(IngestParams(raw_dir=str(tmp_path / "raw"), coco_categories=categories), 0, tmp_path / "out")
    assert manifest.set_index("id")["labeled"].to_dict() == {"a": True, "b": True}
    for name, entry in (("a", 1), ("b", 2)):
        ignore = expected_union(path, entry, ["cell", "debris"], ignored=True)
        expected = expected_union(path, entry, names) & ~ignore
        assert expected.any()
        assert np.array_equal(read_mask(tmp_path / "out", "masks", name) > 0, expected)
    assert np.array_equal(read_mask(tmp_path / "out", "ignore", "b") > 0, expected_union(path, 2, ["cell"], True))
    if categories != "all":  # the filter left the debris square out
        assert not (read_mask(tmp_path / "out", "masks", "a")[2:10, 31:38]).any()


def test_cvat_coco_1_export(tmp_path):
    """CVAT's "COCO 1.0": annotations/instances_default.json beside images/, ids from 1, masks as
    uncompressed RLE with iscrowd 1, extra keys (licenses, info, attributes)."""
    raw = tmp_path / "raw"
    save_image(raw / "images" / "frame_000000.PNG")
    save_image(raw / "images" / "frame_000001.PNG", seed=1)
    mask = blob(4, 4, 20, 12)
    document = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
        "categories": [{"id": 1, "name": "nucleus", "supercategory": ""}],
        "images": [{"id": index + 1, "width": WIDTH, "height": HEIGHT, "file_name": f"frame_00000{index}.PNG",
                    "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0} for index in range(2)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[20.5, 3.0, 35.2, 5.1, 30.0, 20.9]],
             "area": 120.0, "bbox": [20.5, 3.0, 14.7, 17.9], "iscrowd": 0, "attributes": {"occluded": False}},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": uncompressed(mask),
             "area": float(mask.sum()), "bbox": [4, 4, 8, 16], "iscrowd": 1, "attributes": {"occluded": False}}],
    }
    (raw / "annotations").mkdir()
    path = raw / "annotations" / "instances_default.json"
    path.write_text(json.dumps(document))
    manifest = ingest(IngestParams(raw_dir=str(raw)), 0, tmp_path / "out")
    # the frame without annotations is an annotated frame with nothing on it
    assert manifest.set_index("id")["labeled"].to_dict() == {"frame_000000": True, "frame_000001": True}
    assert np.array_equal(read_mask(tmp_path / "out", "masks", "frame_000000") > 0,
                          expected_union(path, 1, ["nucleus"]))
    assert not read_mask(tmp_path / "out", "masks", "frame_000001").any()


def test_label_studio_coco_export(tmp_path):
    """Label Studio's COCO export: result.json beside images/ (file_name 'images/<name>'), image and
    category ids from 0: its category 0 is a real category, not COCO's 'unlabeled'."""
    raw = tmp_path / "raw"
    save_image(raw / "images" / "1f2e3d4c-cells.png")
    document = {
        "images": [{"width": WIDTH, "height": HEIGHT, "id": 0, "file_name": "images/1f2e3d4c-cells.png"}],
        "categories": [{"id": 0, "name": "Cell"}, {"id": 1, "name": "Nucleus"}],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": 0, "segmentation": [[4.0, 4.0, 30.0, 6.0, 12.0, 28.0]],
             "bbox": [4.0, 4.0, 26.0, 24.0], "ignore": 0, "iscrowd": 0, "area": 300.0},
            {"id": 1, "image_id": 0, "category_id": 1, "segmentation": [[32.0, 20.0, 39.0, 20.0, 36.0, 31.0]],
             "bbox": [32.0, 20.0, 7.0, 11.0], "ignore": 0, "iscrowd": 0, "area": 38.5}],
        "info": {"year": 2026, "version": "1.0", "description": "", "contributor": "Label Studio", "url": "",
                 "date_created": "2026-12-03 05:00:00"},
    }
    path = raw / "result.json"
    path.write_text(json.dumps(document))
    ingest(IngestParams(raw_dir=str(raw), coco_categories=["Cell"]), 0, tmp_path / "out")
    mask = read_mask(tmp_path / "out", "masks", "1f2e3d4c-cells") > 0
    assert np.array_equal(mask, expected_union(path, 0, ["Cell"]))
    assert not (tmp_path / "out" / "ignore" / "1f2e3d4c-cells.png").exists()



@pytest.mark.parametrize("change, params, problem", [
    (lambda doc: None, {"coco_categories": ["cell", "nucleus"]}, "category 'nucleus' of ingest.coco_categories"),
    (lambda doc: doc["images"].append({"id": 3, "file_name": "gone.png"}), {}, "image 3: its file 'gone.png'"),
    (lambda doc: doc["annotations"].append({"id": 9, "image_id": 7, "category_id": 1, "segmentation": []}), {},
     "annotation 9 is of image id 7"),
    (lambda doc: doc["annotations"].append({"id": 9, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                                            "segmentation": []}), {}, "annotation 9 of image 1 is a bounding box"),
    (lambda doc: doc["images"].append({"id": 1, "file_name": "b.png"}), {}, "image id 1 is used twice"),
    (lambda doc: doc["annotations"].append({"id": 9, "image_id": 1, "category_id": 1, "iscrowd": 1,
                                            "segmentation": {"size": [HEIGHT, WIDTH], "counts": "0"}}), {},
     "annotation 9 of image 1: RLE counts are corrupt"),
    (lambda doc: doc["annotations"].append({"id": 9, "image_id": 1, "category_id": 1,
                                            "segmentation": [[1, 2, 3, 4]]}), {}, "annotation 9 of image 1: a polygon"),
])
def test_bad_files_are_one_line_naming_file_and_entry_with_nothing_written(tmp_path, change, params, problem):
    raw = tmp_path / "raw"
    path = generated_file(raw)
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    with pytest.raises(ActivesegError) as caught:
        ingest(IngestParams(raw_dir=str(raw), **params), 0, tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message
    assert not (tmp_path / "out").exists()
