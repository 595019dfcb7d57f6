"""The lesion's box of a mask, and whole splits cut to it: what paper 1's
segment-then-classify feeds its classifier (Fig. 17). A classifier trained on crops cut by
the ground-truth masks (--config.crop_to_lesion) sees what a segmenter's crops show it."""

import numpy as np

from skinjax.data.arrays import SplitArrays, resize_image

MARGIN = 0.1  # of the box's height and width, on each side
SOURCE_SIZE = 224  # the crops are cut at this resolution, then resized to the model's


def lesion_box(mask: np.ndarray, margin: float = MARGIN) -> tuple[int, int, int, int] | None:
  """Bounding box (top, left, bottom, right; bottom and right exclusive) of the mask's
  lesion pixels, grown by `margin` of its size on each side and clipped to the image;
  None when the mask is empty."""
  rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
  if not len(rows):
    return None
  top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
  grow_rows, grow_cols = int(round(margin * (bottom - top))), int(round(margin * (right - left)))
  height, width = mask.shape
  return (max(0, top - grow_rows), max(0, left - grow_cols), min(height, bottom + grow_rows),
          min(width, right + grow_cols))


def cut(image: np.ndarray, box, size: int) -> np.ndarray:
  """uint8[size, size, 3]: the box of `image` (the whole image for None), resized."""
  if box is not None:
    image = np.ascontiguousarray(image[box[0]:box[2], box[1]:box[3]])
  return resize_image(image, size)


def crop_split(arrays: SplitArrays, size: int, margin: float = MARGIN) -> SplitArrays:
  """Each image of `arrays` (with masks) cut to its own mask's lesion box and resized to
  `size`; an image with an empty mask stays whole. The masks are dropped (a classifier's
  split)."""
  if arrays.masks is None:
    raise ValueError('cropping to the lesion needs masks')
  crops = [cut(image, lesion_box(mask[..., 0] > 0, margin), size)
           for image, mask in zip(np.asarray(arrays.images), np.asarray(arrays.masks))]
  images = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
  return SplitArrays(images, arrays.labels, arrays.image_ids)
