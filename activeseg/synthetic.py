"""The built-in synthetic data set: used when the user brings no data of their own.

Seeded gray-ish RGB images with a textured background, noise and several objects (ellipses,
polygons, smooth blobs) of varied size, contrast and shape. A per-image difficulty drawn at
random lowers object contrast and raises noise and texture, so some images are genuinely harder
than others: active learning has something to find.
"""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid, upsampled smoothly."""
    coarse = rng.random((max(2, size // scale), max(2, size // scale)), dtype=np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def _object_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    radius = int(rng.uniform(0.04, 0.18) * size) + 2
    center = (int(rng.integers(radius, size - radius)), int(rng.integers(radius, size - radius)))
    shape = rng.choice(["ellipse", "polygon", "blob"])
    if shape == "ellipse":
        axes = (radius, max(2, int(radius * rng.uniform(0.4, 1.0))))
        cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    elif shape == "polygon":
        corners = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
        radii = radius * rng.uniform(0.5, 1.0, corners)
        points = np.stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [points.astype(np.int32)], 255)
    else:
        field = _smooth_noise(rng, 2 * radius + 1, 4)
        yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
        falloff = 1.0 - np.hypot(yy, xx) / radius
        blob = ((field * 0.6 + falloff) > 0.7).astype(np.uint8) * 255
        top, left = center[1] - radius, center[0] - radius
        mask[top:top + blob.shape[0], left:left + blob.shape[1]] = blob[: size - top, : size - left]
    return mask


def make_example(rng: np.random.Generator, size: int, min_objects: int, max_objects: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image and its 0/255 mask."""
    difficulty = rng.uniform(0.0, 1.0)
    background = 0.35 + 0.25 * _smooth_noise(rng, size, 8) + 0.25 * difficulty * _smooth_noise(rng, size, 3)
    image = background.copy()
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        object_mask = _object_mask(rng, size)
        contrast = rng.uniform(0.35, 0.6) * (1.0 - 0.75 * difficulty) * rng.choice([-1.0, 1.0])
        inside = object_mask > 0
        texture = 0.1 * _smooth_noise(rng, size, 2)
        image[inside] = np.clip(background[inside] + contrast + texture[inside], 0, 1)
        mask |= object_mask
    image = cv2.GaussianBlur(image, (3, 3), 0.8)
    image += rng.normal(0, 0.02 + 0.08 * difficulty, image.shape).astype(np.float32)
    tint = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    rgb = np.clip(image[..., None] * tint * 255, 0, 255).astype(np.uint8)
    return rgb, mask


def image_ids(count: int) -> list[str]:
    """The ids of a synthetic set of ``count`` images, in order."""
    return [f"synthetic_{index:04d}" for index in range(count)]


def generate(count: int, size: int, min_objects: int, max_objects: int, seed: int
             ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(image_id, rgb_image, mask)``; the same seed gives the same data set."""
    for index, image_id in enumerate(image_ids(count)):
        rng = np.random.default_rng([seed, index])
        image, mask = make_example(rng, size, min_objects, max_objects)
        yield image_id, image, mask
