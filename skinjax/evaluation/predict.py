"""A trained run on a user's image files.

User images (`read_image`) may be any size and any mode PIL reads: grayscale and palette
images are expanded to RGB, alpha is dropped, 16-bit images are scaled to 8 bits. An image
whose longer side exceeds MAX_SIDE is analysed downscaled to it (the models see at most a
few hundred pixels; a segmenter's mask and overlay come at that size). A JPEG is decoded
at 1/2, 1/4 or 1/8 scale on the way, so a 10000x10000 JPEG costs ~20 MB instead of 300 MB.
Other formats are decoded whole, up to PIL's decompression-bomb limit (~89.5 M pixels,
image_files.MAX_PIXELS); a larger one is refused with a DatasetFileError saying so.

Images go through the training pipeline's own resize (skinjax.data.arrays.resize_image)
and preprocessing (skinjax.train.build.preprocess), and the model's outputs through the
task's (skinjax.train.tasks), as in evaluation.
"""

import functools

import jax
import numpy as np
from PIL import Image

from skinjax.data.arrays import resize_image
from skinjax.data.image_files import read_rgb
from skinjax.evaluation.restore import restore_run
from skinjax.train import build, steps

MAX_SIDE = 2048


def read_image(path) -> np.ndarray:
  """uint8[H, W, 3] of a user's image file, its longer side at most MAX_SIDE (module
  docstring); DatasetFileError naming the file when it cannot be used."""
  return read_rgb(path, max_side=MAX_SIDE)


class Predictor:
  """A run's checkpoint (best by default), ready to map uint8 RGB images of any size to
  outputs."""

  def __init__(self, workdir: str, *, step='best'):
    self.run = restore_run(workdir, step=step)
    self.task = self.run.spec.task
    self.class_names = self.run.class_names
    self.image_size = self.run.spec.image_size
    self._variables = self.run.variables
    self._outputs = jax.jit(functools.partial(
        steps.predict_step, model=self.run.model, task=self.run.task,
        preprocess=build.preprocess(self.run.spec)))

  def outputs(self, image: np.ndarray) -> dict:
    """The task's outputs (skinjax.train.tasks) for one uint8[H, W, 3] image, resized to
    the model's resolution."""
    batch = resize_image(image, self.image_size)[None]
    return {key: np.asarray(value)[0]
            for key, value in self._outputs(self._variables, batch).items()}

  def probabilities(self, image: np.ndarray) -> dict[str, float]:
    """Class name -> probability (classifiers)."""
    probabilities = self.outputs(image)['probabilities']
    return {name: float(p) for name, p in zip(self.class_names, probabilities)}

  def mask(self, image: np.ndarray) -> np.ndarray:
    """bool[H, W] lesion mask at the image's own size (segmenters): the lesion
    probability map is resized bilinearly, then thresholded at 0.5."""
    probability = self.outputs(image)['probability'][..., 0].astype(np.float32)
    height, width = image.shape[:2]
    resized = Image.fromarray(probability).resize((width, height), Image.BILINEAR)
    return np.asarray(resized) > 0.5
