"""Predictions on user images from a trained run's workdir, and paper 1's segmentation-driven
diagnosis (Fig. 17): segment the lesion, crop its bounding box with a margin, classify the
crop.

User images (`read_image`) may be any size and any mode PIL reads: grayscale and palette
images are expanded to RGB, alpha is dropped, 16-bit images are scaled to 8 bits. An image
whose longer side exceeds MAX_SIDE is analysed downscaled to it (the models see at most a
few hundred pixels; a segmenter's mask and overlay come at that size). A JPEG is decoded
at 1/2, 1/4 or 1/8 scale on the way, so a 10000x10000 JPEG costs ~20 MB instead of 300 MB.
Other formats are decoded whole, up to PIL's decompression-bomb limit (~89.5 M pixels,
image_files.MAX_PIXELS); a larger one is refused with a DatasetFileError saying so.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from skinjax.data.arrays import resize_image
from skinjax.data.image_files import read_rgb
from skinjax.train import run_state

MAX_SIDE = 2048


def read_image(path) -> np.ndarray:
  """uint8[H, W, 3] of a user's image file, its longer side at most MAX_SIDE (module
  docstring); DatasetFileError naming the file when it cannot be used."""
  return read_rgb(path, max_side=MAX_SIDE)


class Predictor:
  """A run's best checkpoint, ready to map uint8 RGB images of any size to outputs."""

  def __init__(self, workdir: str, *, step='best'):
    self.run = run_state.restore_run(workdir, step=step)
    description = self.run.description
    self.task = description['task']
    self.class_names = description['class_names']
    self.image_size = description['image_size']
    self._mean = jnp.asarray(description['normalization']['mean'], jnp.float32)
    self._std = jnp.asarray(description['normalization']['std'], jnp.float32)
    variables = {'params': self.run.state.params, 'batch_stats': self.run.state.batch_stats}
    model = self.run.model
    self._forward = jax.jit(lambda images: model.apply(
        variables, (images.astype(jnp.float32) - self._mean) / self._std, train=False))

  def logits(self, image: np.ndarray) -> np.ndarray:
    """Model outputs for one uint8[H, W, 3] image, resized to the model's resolution."""
    return np.asarray(self._forward(resize_image(image, self.image_size)[None]))[0]

  def probabilities(self, image: np.ndarray) -> dict[str, float]:
    """Class name -> probability (classifiers)."""
    logits = self.logits(image)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return {name: float(p) for name, p in zip(self.class_names, probabilities)}

  def mask(self, image: np.ndarray) -> np.ndarray:
    """bool[H, W] lesion mask at the image's own size (segmenters): the lesion
    probability map is resized bilinearly, then thresholded at 0.5."""
    probability = 1 / (1 + np.exp(-self.logits(image)[..., 0]))
    height, width = image.shape[:2]
    resized = Image.fromarray(probability.astype(np.float32)).resize((width, height),
                                                                      Image.BILINEAR)
    return np.asarray(resized) > 0.5


@dataclasses.dataclass
class Diagnosis:
  mask: np.ndarray  # bool[H, W]
  box: tuple[int, int, int, int] | None  # (top, left, bottom, right), bottom/right exclusive
  probabilities: dict[str, float]

  @property
  def predicted(self) -> str:
    return max(self.probabilities, key=self.probabilities.get)

  def to_json(self) -> dict:
    return {'lesion_found': self.box is not None,
            'lesion_fraction': float(self.mask.mean()),
            'crop_box': None if self.box is None else dict(zip(
                ('top', 'left', 'bottom', 'right'), map(int, self.box))),
            'predicted_class': self.predicted, 'probabilities': self.probabilities}


def lesion_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
  """Bounding box of the mask's lesion pixels, grown by `margin` of its size on each side
  and clipped to the image; None when the mask is empty."""
  rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
  if not len(rows):
    return None
  top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
  grow_rows, grow_cols = int(round(margin * (bottom - top))), int(round(margin * (right - left)))
  height, width = mask.shape
  return (max(0, top - grow_rows), max(0, left - grow_cols), min(height, bottom + grow_rows),
          min(width, right + grow_cols))


def diagnose(image: np.ndarray, segmenter: Predictor, classifier: Predictor,
             margin: float = 0.1) -> Diagnosis:
  """Segment, crop the lesion's box (the whole image when no lesion is found), classify."""
  mask = segmenter.mask(image)
  box = lesion_box(mask, margin)
  crop = image if box is None else image[box[0]:box[2], box[1]:box[3]]
  return Diagnosis(mask, box, classifier.probabilities(crop))
