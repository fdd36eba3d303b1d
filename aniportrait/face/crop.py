"""The Gradio app's reference crop (docs/pipeline.md#reference-image) and pasting generated frames back into the source
image.

Rule: with the landmark bounding box in pixels, a face covering at least 15 % of the image gets a centred square
crop of side min(W, H); a smaller face gets a square of 1.5 x the larger box side centred on the box, padded
with black where it leaves the image.

Fix of upstream bug docs/departures.md#b15: the app cuts ``offset`` pixels from both ends of the long side, which leaves
nothing when the sides differ by 1 (and one extra row/column for other odd differences). Here the centred crop is
always exactly min(W, H) square; for even differences it is the app's crop.
"""
from __future__ import annotations

import cv2
import numpy as np

CROP_EXPAND = 1.5
LARGE_FACE_FRACTION = 0.15

Box = tuple[int, int, int, int]   # (x0, y0, x1, y1) in source pixels, exclusive end; may extend past the image


def crop_box(lmks: np.ndarray, width: int, height: int, expand: float = CROP_EXPAND) -> Box:
    """The app's crop of a ``width`` x ``height`` image whose face has normalised landmarks ``lmks`` (N, ≥2)."""
    xs = np.asarray(lmks)[:, 0] * width
    ys = np.asarray(lmks)[:, 1] * height
    x_min, x_max, y_min, y_max = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
    box_w, box_h = x_max - x_min, y_max - y_min
    if box_w * box_h >= width * height * LARGE_FACE_FRACTION:
        side = min(width, height)
        offset = (max(width, height) - side) // 2
        return (offset, 0, offset + side, height) if width > height else (0, offset, width, offset + side)
    centre_x, centre_y = x_min + box_w / 2, y_min + box_h / 2
    side = max(box_w, box_h) * expand
    # int() truncates towards zero like the app, so the box may come out one pixel off square
    return (int(centre_x - side / 2), int(centre_y - side / 2), int(centre_x + side / 2), int(centre_y + side / 2))


def _overlap(box: Box, width: int, height: int) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Where ``box`` overlaps a ``width`` x ``height`` image, as (rows, columns) slices into the image and into
    the box; None when they do not overlap."""
    x0, y0, x1, y1 = box
    left, top, right, bottom = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if right <= left or bottom <= top:
        return None
    return ((slice(top, bottom), slice(left, right)),
            (slice(top - y0, bottom - y0), slice(left - x0, right - x0)))


def crop_image(image: np.ndarray, box: Box) -> np.ndarray:
    """The ``box`` region of an (H, W, C) image; parts outside the image are black."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"AniPortrait: the crop box {box} is empty.")
    out = np.zeros((y1 - y0, x1 - x0) + image.shape[2:], dtype=image.dtype)
    overlap = _overlap(box, image.shape[1], image.shape[0])
    if overlap is not None:
        in_image, in_box = overlap
        out[in_box] = image[in_image]
    return out


def crop_face(image: np.ndarray, lmks: np.ndarray, expand: float = CROP_EXPAND) -> tuple[np.ndarray, Box]:
    """The app's ``crop_face`` on an (H, W, C) image with the face's normalised landmarks: (crop, box)."""
    box = crop_box(lmks, image.shape[1], image.shape[0], expand)
    return crop_image(image, box), box


def feather_mask(box: Box, width: int, height: int, feather: int) -> np.ndarray:
    """(y1 - y0, x1 - x0) float32 weights of the pasted box: 1 inside, falling linearly to 0 over ``feather``
    pixels towards each box edge that lies inside the ``width`` x ``height`` image (an edge on or past the
    image border needs no blending)."""
    x0, y0, x1, y1 = box
    if feather <= 0:
        return np.ones((y1 - y0, x1 - x0), dtype=np.float32)
    rows, columns = np.arange(y0, y1) + 0.5, np.arange(x0, x1) + 0.5

    def ramp(position: np.ndarray, start: int, end: int, size: int) -> np.ndarray:
        from_start = (position - start) / feather if start > 0 else np.inf
        from_end = (end - position) / feather if end < size else np.inf
        return np.clip(np.minimum(from_start, from_end), 0.0, 1.0)

    return np.outer(ramp(rows, y0, y1, height), ramp(columns, x0, x1, width)).astype(np.float32)


def paste_back(source: np.ndarray, frames: np.ndarray, box: Box, feather: int = 0) -> np.ndarray:
    """Frames (N, h, w, C) uint8 generated from the crop ``box`` of ``source`` (H, W, C), each resized to the box
    (bilinear) and blended over a copy of ``source`` with :func:`feather_mask` (``feather`` pixels of the source;
    0 = a hard edge); parts of the box outside the source are dropped."""
    x0, y0, x1, y1 = box
    out = np.repeat(source[None], len(frames), axis=0)
    overlap = _overlap(box, source.shape[1], source.shape[0])
    if overlap is None:
        return out
    in_source, in_box = overlap
    mask = feather_mask(box, source.shape[1], source.shape[0], feather)[in_box][..., None]
    for pasted, frame in zip(out, frames):
        resized = cv2.resize(frame, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)[in_box]
        blended = resized * mask + pasted[in_source] * (1.0 - mask)
        pasted[in_source] = np.clip(np.round(blended), 0, 255).astype(source.dtype)
    return out
