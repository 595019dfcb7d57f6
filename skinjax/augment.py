"""Batched random augmentation on device: Keras' ImageDataGenerator geometry and contrast.

One random draw per example, as `ImageDataGenerator.get_random_transform` makes it:
rotation (degrees), width and height shifts (fractions of the size, or pixels when >= 1),
shear (degrees: Keras converts with `np.deg2rad`; paper 1's table says radians, a relic of
an older Keras docstring), zoom (independent x and y factors), horizontal and vertical
flips; then paper 2's contrast change (Keras `RandomContrast`). For segmentation the same
geometric transform moves image and mask together; the mask is sampled nearest-neighbour
so it stays in {0, 1}.

The affine map is Keras' `apply_affine_transform`, matrix for matrix, including its
quirks: the shift drawn from `height_shift_range` (scaled by the height) lands on the
column axis and vice versa, and the centre offsets are swapped the same way. On square
images (all the papers use) neither changes anything; tests check parity with Keras on
non-square ones too.
"""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
from jax import lax

FILL_MODES = ('nearest', 'constant', 'reflect', 'wrap')


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Ranges as `keras.preprocessing.image.ImageDataGenerator` takes them."""

  rotation_range: float = 0.0  # degrees
  width_shift_range: float = 0.0  # fraction of the width (< 1) or pixels
  height_shift_range: float = 0.0
  shear_range: float = 0.0  # degrees
  zoom_range: float | tuple[float, float] = 0.0  # z -> [1 - z, 1 + z]
  horizontal_flip: bool = False
  vertical_flip: bool = False
  contrast_range: float = 0.0  # RandomContrast factor: contrast x U(1 - c, 1 + c)
  fill_mode: str = 'nearest'
  cval: float = 0.0
  interpolation_order: int = 1  # 0 nearest, 1 bilinear (Keras' default)

  def __post_init__(self):
    if self.fill_mode not in FILL_MODES:
      raise ValueError(f'fill_mode {self.fill_mode!r} is not one of {FILL_MODES}')
    if self.interpolation_order not in (0, 1):
      raise ValueError(f'interpolation_order must be 0 or 1, got {self.interpolation_order}')

  @property
  def zoom_bounds(self) -> tuple[float, float]:
    if isinstance(self.zoom_range, (tuple, list)):
      return float(self.zoom_range[0]), float(self.zoom_range[1])
    return 1.0 - self.zoom_range, 1.0 + self.zoom_range


# Paper 1, Table 1 (HAM10000 classification).
PAPER1_CLASSIFICATION = AugmentConfig(rotation_range=10, width_shift_range=0.2,
                                      height_shift_range=0.2, shear_range=0.2,
                                      horizontal_flip=True, vertical_flip=True)
# Paper 1, section 2.3 and Table 2 (PH2 segmentation): rotation 40 and horizontal flip.
PAPER1_SEGMENTATION = AugmentConfig(rotation_range=40, horizontal_flip=True)
# Paper 2 names rotation, flips and contrast without values; these are our choice.
PAPER2_CLASSIFICATION = AugmentConfig(rotation_range=20, horizontal_flip=True,
                                      vertical_flip=True, contrast_range=0.2)


def sample_transforms(keys, height: int, width: int, config: AugmentConfig) -> dict:
  """Per-example parameters, named as Keras' get_random_transform names them, each
  example's drawn from its own key (keys: [B]), so a draw does not depend on which other
  examples share its batch or device.

  Returns float32[B] arrays theta (degrees), tx, ty (pixels), shear (degrees), zx, zy,
  contrast, and bool[B] flip_horizontal, flip_vertical.
  """
  def one(key):
    parts = jax.random.split(key, 9)

    def uniform(part, low, high):
      return jax.random.uniform(part, (), jnp.float32, low, high)

    def shift(part, fraction, size):
      pixels = fraction * size if fraction < 1 else fraction
      return uniform(part, -pixels, pixels)

    zoom_low, zoom_high = config.zoom_bounds
    return {
        'theta': uniform(parts[0], -config.rotation_range, config.rotation_range),
        'tx': shift(parts[1], config.height_shift_range, height),
        'ty': shift(parts[2], config.width_shift_range, width),
        'shear': uniform(parts[3], -config.shear_range, config.shear_range),
        'zx': uniform(parts[4], zoom_low, zoom_high),
        'zy': uniform(parts[5], zoom_low, zoom_high),
        'flip_horizontal': jax.random.bernoulli(parts[6], 0.5 * config.horizontal_flip),
        'flip_vertical': jax.random.bernoulli(parts[7], 0.5 * config.vertical_flip),
        'contrast': uniform(parts[8], 1.0 - config.contrast_range,
                            1.0 + config.contrast_range),
    }

  return jax.vmap(one)(keys)


def keras_affine_matrix(theta, tx, ty, shear, zx, zy, height: int, width: int):
  """float32[3, 3] mapping an output (row, col, 1) to the input position it samples.

  Keras builds rotation @ shift @ shear @ zoom, centres it with offsets (height/2 - 0.5,
  width/2 - 0.5) on its first and second coordinate, then swaps the two coordinates.
  """
  theta, shear = jnp.deg2rad(theta), jnp.deg2rad(shear)
  zero, one = jnp.zeros_like(theta), jnp.ones_like(theta)
  rotation = jnp.array([[jnp.cos(theta), -jnp.sin(theta), zero],
                        [jnp.sin(theta), jnp.cos(theta), zero], [zero, zero, one]])
  shift = jnp.array([[one, zero, tx], [zero, one, ty], [zero, zero, one]])
  shear_matrix = jnp.array([[one, -jnp.sin(shear), zero], [zero, jnp.cos(shear), zero],
                            [zero, zero, one]])
  zoom = jnp.array([[zx, zero, zero], [zero, zy, zero], [zero, zero, one]])
  matrix = rotation @ shift @ shear_matrix @ zoom
  o_x, o_y = height / 2 - 0.5, width / 2 - 0.5
  offset = jnp.array([[1.0, 0.0, o_x], [0.0, 1.0, o_y], [0.0, 0.0, 1.0]])
  reset = jnp.array([[1.0, 0.0, -o_x], [0.0, 1.0, -o_y], [0.0, 0.0, 1.0]])
  matrix = offset @ matrix @ reset
  swap = jnp.array([1, 0, 2])
  return matrix[swap][:, swap]


def _fix_index(index, size: int, mode: str):
  """Where an index off the image reads, per fill mode, as scipy.ndimage (and JAX's
  map_coordinates) define them; 'constant' keeps it (the caller masks it to cval)."""
  if mode == 'nearest':
    return jnp.clip(index, 0, size - 1)
  if mode == 'wrap':
    return index % size
  if mode == 'reflect':
    period = 2 * size  # a mirror of half-wavelength 2 * size on the doubled index
    mirrored = jnp.abs((2 * index + 1 + period) % (2 * period) - period)
    return jnp.floor_divide(mirrored - 1, 2)
  return index


def _nodes(coordinate, size: int, order: int, mode: str):
  """(index, valid, weight) of each sample along one axis, as map_coordinates takes them."""
  if order == 0:
    nodes = [(lax.round(coordinate).astype(jnp.int32), jnp.float32(1))]
  else:
    lower = jnp.floor(coordinate)
    upper_weight = coordinate - lower
    nodes = [(lower.astype(jnp.int32), 1 - upper_weight),
             (lower.astype(jnp.int32) + 1, upper_weight)]
  return [(_fix_index(index, size, mode),
           (0 <= index) & (index < size) if mode == 'constant' else None, weight)
          for index, weight in nodes]


def warp(image, matrix, *, order: int, fill_mode: str = 'nearest', cval: float = 0.0):
  """image: [H, W, C]; matrix: [3, 3] from output (row, col) to input. Returns float32.

  jax.scipy.ndimage.map_coordinates' arithmetic, term for term and in its order (the
  values are equal bit for bit, tests/test_augment.py), but each of the 2 x 2 samples is
  one gather of whole pixels: map_coordinates per channel made C times as many gathers,
  which XLA:CPU runs one element at a time.
  """
  height, width, channels = image.shape
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing='ij')
  source = jnp.einsum('ij,jhw->ihw', matrix[:2, :2], jnp.stack([rows, cols]))
  source = source + matrix[:2, 2, None, None]
  pixels = image.astype(jnp.float32).reshape(height * width, channels)
  cval = jnp.float32(cval)
  result = None
  for (row, row_valid, row_weight), (col, col_valid, col_weight) in itertools.product(
      _nodes(source[0], height, order, fill_mode), _nodes(source[1], width, order, fill_mode)):
    contribution = pixels[(row * width + col).reshape(-1)].reshape(height, width, channels)
    if row_valid is not None:
      contribution = jnp.where((row_valid & col_valid)[..., None], contribution, cval)
    term = (row_weight * col_weight)[..., None] * contribution if order else contribution
    result = term if result is None else result + term
  return result


def adjust_contrast(image, factor):
  """Keras RandomContrast on one image [H, W, C] in 0..255: (x - mean) * factor + mean."""
  mean = image.mean(axis=(0, 1), keepdims=True)
  return jnp.clip((image - mean) * factor + mean, 0.0, 255.0)


def apply_transforms(images, masks, params: dict, *, config: AugmentConfig):
  """Applies given per-example parameters (as `sample_transforms` returns them).

  images: [B, H, W, C] in 0..255 -> float32; masks: [B, H, W, 1] or None, dtype kept.
  """
  height, width = images.shape[1:3]
  matrices = jax.vmap(keras_affine_matrix, in_axes=(0, 0, 0, 0, 0, 0, None, None))(
      params['theta'], params['tx'], params['ty'], params['shear'], params['zx'],
      params['zy'], height, width)

  def one(image, mask, matrix, flip_h, flip_v, contrast):
    image = warp(image, matrix, order=config.interpolation_order, fill_mode=config.fill_mode,
                 cval=config.cval)
    if mask is not None:
      mask = warp(mask, matrix, order=0, fill_mode=config.fill_mode).astype(mask.dtype)
    # Keras flips after the affine transform.
    image = jnp.where(flip_h, image[:, ::-1], image)
    image = jnp.where(flip_v, image[::-1], image)
    if mask is not None:
      mask = jnp.where(flip_h, mask[:, ::-1], mask)
      mask = jnp.where(flip_v, mask[::-1], mask)
    if config.contrast_range:
      image = adjust_contrast(image, contrast)
    return image, mask

  return jax.vmap(one)(images, masks, matrices, params['flip_horizontal'],
                       params['flip_vertical'], params['contrast'])


def augment_batch(keys, images, masks=None, *, config: AugmentConfig):
  """Augments a batch with one random draw per example, from keys: [B] (one per example).

  images: [B, H, W, C] in 0..255 -> float32; masks: [B, H, W, 1] or None, dtype kept.
  Returns (images, masks).
  """
  height, width = images.shape[1:3]
  params = sample_transforms(keys, height, width, config)
  return apply_transforms(images, masks, params, config=config)
