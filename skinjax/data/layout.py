"""One image of a dataset's public layout, as a builder lists it: what the audit and the
builders' duplicate grouping read, before any example is written."""

import dataclasses
from typing import Callable

import numpy as np

from skinjax.data import image_files


@dataclasses.dataclass(frozen=True)
class LayoutImage:
  key: str  # unique in the dataset: the file's path under the manual directory
  image_id: str
  label: str  # the diagnosis as the source gives it (its folder, CSV or sheet)
  source_split: str = ''  # the distribution's own split folder ('Train', 'Test'), if any
  group: str = ''  # the source's own grouping of images (HAM10000's lesion_id), if any
  read: Callable[[], tuple[bytes, str]] | None = dataclasses.field(
      default=None, compare=False, repr=False)  # -> (file bytes, name for errors)

  def pixels(self) -> np.ndarray:
    """uint8[H, W, 3], decoded whole; DatasetFileError naming the file if it is damaged."""
    data, name = self.read()
    return image_files.read_rgb(data, name)


def pixels_or_none(image: LayoutImage, damaged) -> np.ndarray | None:
  """image.pixels(), or None after `damaged(error)` when the file is damaged (a builder's
  `damaged` raises, or records the file under skip_corrupt)."""
  try:
    return image.pixels()
  except image_files.DatasetFileError as error:
    damaged(error)
    return None
