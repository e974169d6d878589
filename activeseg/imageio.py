"""Reading and writing image files: one place that knows OpenCV's BGR order and bit depths.

In memory an image is ``(H, W)`` gray or ``(H, W, 3)`` RGB, uint8 (:func:`read_image`) or, read
with :func:`read_native`, uint8 or uint16 as stored (so that the one transform,
:class:`activeseg.preprocess.Transform`, sees a 12- or 16-bit camera's every grey level);
masks are ``(H, W)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from activeseg.errors import ActivesegError
from activeseg.outputs import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def to_uint8(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Bring 8- or 16-bit data to uint8; 16-bit is scaled linearly (0..65535 → 0..255)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array // 257).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    raise ActivesegError(f"{path}: pixel type {array.dtype} is not supported; save it as 8- or 16-bit PNG or TIFF")


def to_native(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Keep 8- and 16-bit data as stored (booleans become 0/255 uint8); refuse other pixel types."""
    if array.dtype in (np.uint8, np.uint16):
        return array
    return to_uint8(array, path)


def to_rgb_or_gray(array: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Drop alpha and singleton channels; OpenCV's BGR becomes RGB."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    if array.ndim == 3 and array.shape[2] == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if array.ndim == 2:
        return array
    raise ActivesegError(f"{path}: unexpected image shape {array.shape}; save it as a gray or RGB image")


def read_array(path: str | os.PathLike) -> np.ndarray:
    """The file's pixels as stored (any bit depth, OpenCV channel order); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ActivesegError(f"{path}: file not found; check the path or remove the reference to it")
    try:
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV raises, rather than returning None, on some corrupt headers (found by fuzzing)
        array = None
    if array is None or array.size == 0:
        raise ActivesegError(f"{path}: cannot be read as an image (corrupt or not an image); re-export it or remove it")
    return array


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a gray or RGB image as uint8; a missing or corrupt file is a one-line error."""
    return to_rgb_or_gray(to_uint8(read_array(path), path), path)


def read_native(path: str | os.PathLike) -> np.ndarray:
    """Read a gray or RGB image at its own bit depth (uint8 or uint16); one-line errors."""
    return to_rgb_or_gray(to_native(read_array(path), path), path)


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a gray or RGB uint8 or uint16 array as PNG (8- or 16-bit), atomically."""
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    with atomic_path(path) as temporary:
        # the temporary name keeps the final suffix, which is how OpenCV picks the format
        if not cv2.imwrite(str(temporary), bgr):
            raise ActivesegError(f"{path}: could not be written; check the disk and the folder's permissions")


def encode_png(array: np.ndarray) -> bytes:
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, buffer = cv2.imencode(".png", bgr)
    if not ok:
        raise ActivesegError("could not encode an image as PNG")
    return buffer.tobytes()
