"""Fuzzing the readers of user files with malformed input: nothing but ActivesegError escapes.

Hypothesis feeds random bytes and mutated valid files (flipped bytes, truncation) to each reader
for a bounded number of examples (a few seconds each); any other exception, or a crash of the
process, fails the test and hypothesis prints the smallest input that caused it.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activeseg.errors import ActivesegError
from activeseg.imageio import read_image

BOUNDED = settings(max_examples=120, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def valid_tiff(pages: int = 1, dtype=np.uint8, channels: int = 0) -> bytes:
    shape = (pages, 16, 16, channels) if channels else (pages, 16, 16)
    data = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, data if pages > 1 else data[0])
    return buffer.getvalue()


SEEDS = [valid_tiff(), valid_tiff(dtype=np.uint16), valid_tiff(channels=3), valid_tiff(pages=3)]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A valid file with some bytes overwritten, then possibly truncated or extended."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for position, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                                         max_size=8)):
        data[position] = value
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=16))


def tiff_claiming_height(height: int) -> bytes:
    """A valid TIFF whose ImageLength tag is overwritten: OpenCV raises (not returns None) on it."""
    data = bytearray(valid_tiff())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tiff:
        offset = tiff.pages[0].tags[257].valueoffset
    data[offset:offset + 4] = height.to_bytes(4, "little")
    return bytes(data)


@pytest.fixture(scope="module")
def scratch():
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # libtiff complains about every input
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        yield Path(folder)
    cv2.utils.logging.setLogLevel(level)


def read_or_clear_error(reader, path: Path) -> None:
    try:
        result = reader(path)
    except ActivesegError as error:
        assert str(error).startswith(str(path)), "the error must name the file"
        assert "\n" not in str(error)
        return
    if isinstance(result, np.ndarray):  # whatever is accepted is what the pipeline expects
        assert result.dtype == np.uint8 and result.ndim in (2, 3)


def test_tiff_with_absurd_height_is_a_clear_error(scratch):
    path = scratch / "tall.tif"
    path.write_bytes(tiff_claiming_height(2**23))
    with pytest.raises(ActivesegError, match="cannot be read as an image"):
        read_image(path)


@BOUNDED
@given(data=st.one_of(mutated(SEEDS), st.binary(max_size=512)))
def test_tiff_reader_fuzz(scratch, data):
    path = scratch / "image.tif"
    path.write_bytes(data)
    read_or_clear_error(read_image, path)
