"""Reading the images and masks of the public dataset layouts, with errors that name files.

Every reader decodes the whole file (not just its header), so a truncated or damaged file
is found while the dataset is built, not in the middle of training. Whatever the bytes,
the readers return what they promise or raise DatasetFileError; no other exception leaves
them (tests/test_fuzz_readers.py checks this with random and mutated files).
"""

import io
import os
from typing import NoReturn
import warnings

import numpy as np
from PIL import Image

# Masks and images of one example may differ in size only by a common scale factor (the
# shared HAM10000 copy pairs 200x150 JPEGs with 600x450 masks); aspect ratios must agree.
ASPECT_TOLERANCE = 0.01
# The most pixels a reader decodes: PIL's decompression-bomb limit (~89.5 M pixels,
# 0.25 GiB as RGB). A larger JPEG may still be read at a reduced scale (`draft_size`).
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
# Modes PIL gives 16- and 32-bit integer images (16-bit grayscale PNG and TIFF); their
# convert() clips to 0..255 instead of scaling, so they are scaled here.
INTEGER_MODES = ('I', 'I;16', 'I;16L', 'I;16B', 'I;16N')


class DatasetFileError(ValueError):
  """A dataset file is missing, unreadable or not what the layout promises."""


def _name(source, name: str | None) -> str:
  """How errors name `source`: `name`, else its path."""
  return name or ('<image bytes>' if isinstance(source, bytes) else os.fspath(source))


def refuse(error: DatasetFileError) -> NoReturn:
  """The strict answer to a damaged file: raise its error (a build may skip it instead)."""
  raise error


def read_bytes(path, name: str | None = None) -> bytes:
  """The bytes of file `path`; DatasetFileError naming it when it is missing or unreadable."""
  name = _name(path, name)
  try:
    if hasattr(path, 'read_bytes'):  # pathlib and etils paths
      return path.read_bytes()
    with open(path, 'rb') as file:
      return file.read()
  except FileNotFoundError:
    raise DatasetFileError(f'{name}: file not found') from None
  except OSError as error:
    raise DatasetFileError(f'{name}: cannot be read ({error.strerror or error})') from None


def open_image(source, name: str | None = None, *,
               draft_size: tuple[int, int] | None = None) -> Image.Image:
  """Opens and fully decodes `source` (a path or bytes); `name` (default: the path) is how
  errors name the file. The returned image keeps its `format` ('JPEG', 'PNG', 'BMP').

  draft_size: (width, height) a JPEG may be decoded down to (by 1/2, 1/4 or 1/8, staying
    at least this size), so that a huge JPEG costs a fraction of its full memory.
  Raises DatasetFileError for an empty, damaged or non-image file, and for an image of
  more than MAX_PIXELS pixels as decoded.
  """
  name = _name(source, name)
  data = source if isinstance(source, bytes) else read_bytes(source, name)
  if not data:
    raise DatasetFileError(f'{name}: not a readable image (empty file, 0 bytes); expected a '
                           'complete JPEG, PNG or BMP file')
  try:
    with warnings.catch_warnings():
      # The size is checked against MAX_PIXELS below, after a JPEG's draft has shrunk it.
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      image = Image.open(io.BytesIO(data))
    if draft_size is not None and image.format == 'JPEG':
      image.draft(None, tuple(draft_size))
    width, height = image.size
    if width * height > MAX_PIXELS:
      raise DatasetFileError(
          f'{name}: {width}x{height} {image.format} image has {width * height:,} pixels; '
          f'expected at most {MAX_PIXELS:,} (PIL\'s decompression-bomb limit)')
    image.load()
  except DatasetFileError:
    raise
  except Image.DecompressionBombError as error:
    raise DatasetFileError(f'{name}: {error}') from None
  except Exception as error:  # PIL raises many types for damaged files.
    raise DatasetFileError(f'{name}: not a readable image ({type(error).__name__}: {error}); '
                           'expected a complete JPEG, PNG or BMP file') from None
  return image


def _convert(image: Image.Image, mode: str, name: str) -> Image.Image:
  """`image` in mode 'RGB' or 'L'; integer images are scaled from 16 bits, alpha dropped."""
  if image.mode in INTEGER_MODES:
    gray = np.clip(np.asarray(image), 0, 65535) // 257
    image = Image.fromarray(gray.astype(np.uint8))
  elif image.mode == 'F':
    raise DatasetFileError(f'{name}: 32-bit floating-point image; expected 8- or 16-bit '
                           'integer pixels')
  try:
    return image.convert(mode)
  except Exception as error:  # Modes such as 'La' have no conversion.
    raise DatasetFileError(f'{name}: a {image.mode} image cannot be converted to {mode} '
                           f'({error})') from None


def read_rgb(source, name: str | None = None, *, max_side: int | None = None) -> np.ndarray:
  """uint8[H, W, 3] from an image file path or its bytes.

  Grayscale and palette images are expanded, alpha is dropped and 16-bit images are scaled
  to 8 bits. max_side: when given, a larger image is shrunk (aspect kept) so that its
  longer side is max_side; a JPEG is decoded at reduced scale on the way.
  """
  name = _name(source, name)
  draft = None if max_side is None else (max_side, max_side)
  image = _convert(open_image(source, name, draft_size=draft), 'RGB', name)
  if max_side is not None and max(image.size) > max_side:
    image.thumbnail((max_side, max_side), Image.BILINEAR)
  return np.asarray(image)


def as_rgb_jpeg(data: bytes, name: str):
  """(stored, (width, height)): what an image feature stored as JPEG should get from file
  `data`, and the image's size. stored is the bytes themselves when they are an RGB JPEG,
  else the decoded uint8[H, W, 3] pixels (a PNG named .jpg, a grayscale or CMYK JPEG),
  which the feature encodes as JPEG. The file is decoded fully either way, so damage is
  found here (DatasetFileError naming `name`)."""
  image = open_image(data, name)
  if image.format == 'JPEG' and image.mode == 'RGB':
    return data, image.size
  return np.asarray(_convert(image, 'RGB', name)), image.size


def read_mask(source, name: str | None = None, *, size: tuple[int, int] | None = None,
              rescale: bool = False) -> np.ndarray:
  """uint8[H, W, 1] in {0, 1} from a lesion mask of any bit depth (1-bit, palette, 8-bit,
  16-bit, RGB).

  A pixel is lesion where the mask's luminance (on an 8-bit scale) is above 127.

  Args:
    source: path or bytes of the mask file.
    name: how errors name the file (default: the path).
    size: (width, height) of the image the mask belongs to; the mask must match it.
    rescale: accept a mask of another size with the same aspect ratio, resized to `size`
      with nearest-neighbour sampling.
  """
  name = _name(source, name)
  mask = _convert(open_image(source, name), 'L', name)
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
