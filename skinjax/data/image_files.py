"""Reading the images and masks of the public dataset layouts, with errors that name files.

Every reader decodes the whole file (not just its header), so a truncated or damaged file
is found while the dataset is built, not in the middle of training.
"""

import io
import os

import numpy as np
from PIL import Image

# Masks and images of one example may differ in size only by a common scale factor (the
# shared HAM10000 copy pairs 200x150 JPEGs with 600x450 masks); aspect ratios must agree.
ASPECT_TOLERANCE = 0.01


class DatasetFileError(ValueError):
  """A dataset file is missing, unreadable or not what the layout promises."""


def open_image(source, name: str | None = None) -> Image.Image:
  """Opens and fully decodes `source` (a path or bytes); `name` (default: the path) is how
  errors name the file. The returned image keeps its `format` ('JPEG', 'PNG', 'BMP')."""
  name = name or os.fspath(source)
  try:
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    image.load()
  except FileNotFoundError:
    raise DatasetFileError(f'{name}: file not found') from None
  except Exception as error:  # PIL raises many types for damaged files.
    raise DatasetFileError(f'{name}: not a readable image ({type(error).__name__}: {error}); '
                           'expected a complete JPEG, PNG or BMP file') from None
  return image


def read_rgb(source, name: str | None = None) -> np.ndarray:
  """uint8[H, W, 3] from an image file path or its bytes (grayscale and RGBA converted)."""
  return np.asarray(open_image(source, name).convert('RGB'))


def read_mask(source, name: str | None = None, *, size: tuple[int, int] | None = None,
              rescale: bool = False) -> np.ndarray:
  """uint8[H, W, 1] in {0, 1} from a lesion mask of any bit depth (1-bit, palette, 8-bit, RGB).

  A pixel is lesion where the mask's luminance is above 127.

  Args:
    source: path or bytes of the mask file.
    name: how errors name the file (default: the path).
    size: (width, height) of the image the mask belongs to; the mask must match it.
    rescale: accept a mask of another size with the same aspect ratio, resized to `size`
      with nearest-neighbour sampling.
  """
  name = name or os.fspath(source)
  mask = open_image(source, name).convert('L')
  if size is not None and mask.size != tuple(size):
    width, height = size
    same_aspect = abs(mask.size[0] * height - mask.size[1] * width) <= (
        ASPECT_TOLERANCE * mask.size[1] * width)
    if not (rescale and same_aspect):
      raise DatasetFileError(
          f'{name}: mask is {mask.size[0]}x{mask.size[1]}, expected the size of its image, '
          f'{width}x{height}' + ('' if not rescale else ' (or the same aspect ratio)'))
    mask = mask.resize((width, height), Image.NEAREST)
  return (np.asarray(mask) > 127).astype(np.uint8)[..., None]


def encode_png(array: np.ndarray) -> bytes:
  """Lossless PNG bytes of uint8[H, W, C] (C in 1, 3)."""
  buffer = io.BytesIO()
  Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(
      buffer, format='PNG', compress_level=1)
  return buffer.getvalue()
