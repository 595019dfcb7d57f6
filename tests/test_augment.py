"""On-device augmentation: Keras' ImageDataGenerator geometry, flips and contrast."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax.scipy import ndimage

from skinjax.augment import (FILL_MODES, AugmentConfig, PAPER1_CLASSIFICATION, PAPER1_SEGMENTATION,
                             PAPER2_CLASSIFICATION, adjust_contrast, apply_transforms,
                             augment_batch, keras_affine_matrix, sample_transforms, warp)

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (4, 20, 32, 3)).astype(np.uint8)


def identity_params(batch_size, **changes):
  params = {'theta': 0.0, 'tx': 0.0, 'ty': 0.0, 'shear': 0.0, 'zx': 1.0, 'zy': 1.0,
            'flip_horizontal': False, 'flip_vertical': False, 'contrast': 1.0}
  params.update(changes)
  return {key: jnp.full((batch_size,), value) for key, value in params.items()}


def keys(seed, count):
  return jax.random.split(jax.random.key(seed), count)


def test_zero_ranges_give_the_identity():
  images, masks = augment_batch(keys(0, len(IMAGES)), IMAGES, None, config=AugmentConfig())
  assert masks is None
  np.testing.assert_array_equal(images, IMAGES.astype(np.float32))


def test_a_90_degree_rotation_equals_rot90():
  square = IMAGES[:, :20, :20]
  rotated, _ = apply_transforms(square, None, identity_params(4, theta=90.0),
                                config=AugmentConfig())
  # Keras rotates counter-clockwise for positive angles, as np.rot90 does.
  np.testing.assert_allclose(rotated, np.rot90(square, 1, axes=(1, 2)), atol=1e-3)


@pytest.mark.parametrize('flip', ['flip_horizontal', 'flip_vertical'])
def test_two_flips_give_the_identity(flip):
  params = identity_params(4, **{flip: True})
  once, _ = apply_transforms(IMAGES, None, params, config=AugmentConfig())
  twice, _ = apply_transforms(once, None, params, config=AugmentConfig())
  assert not np.array_equal(once, IMAGES)
  np.testing.assert_array_equal(twice, IMAGES.astype(np.float32))


@pytest.mark.parametrize('params', [
    dict(theta=17.0, tx=3.0, ty=-5.0, shear=10.0, zx=1.1, zy=0.9),
    dict(theta=-33.0),
    dict(tx=4.5, ty=2.0),
    dict(shear=0.2, zx=0.8, zy=1.2),
])
def test_affine_warp_matches_keras_apply_affine_transform(params):
  """Keras' own implementation, on a non-square image so the axis conventions show."""
  os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
  from keras.src.legacy.preprocessing.image import apply_affine_transform
  image = RNG.uniform(0, 255, (30, 44, 3))
  full = dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0) | params
  expected = apply_affine_transform(image, **full, row_axis=0, col_axis=1, channel_axis=2,
                                    fill_mode='nearest', order=1)
  matrix = keras_affine_matrix(*[jnp.float32(full[key]) for key in
                                 ('theta', 'tx', 'ty', 'shear', 'zx', 'zy')], 30, 44)
  actual = warp(jnp.asarray(image, jnp.float32), matrix, order=1)
  np.testing.assert_allclose(actual, expected, atol=2e-3)  # float32 vs float64, 0..255


@pytest.mark.parametrize('config', [PAPER1_CLASSIFICATION, PAPER1_SEGMENTATION,
                                    PAPER2_CLASSIFICATION])
def test_masks_stay_binary_and_move_with_their_image(config):
  masks = np.zeros((8, 32, 32, 1), np.uint8)
  masks[:, 8:20, 10:26] = 1
  # An image that is its mask: with nearest sampling it must still equal the mask.
  images = np.repeat(masks * 200, 3, axis=-1)
  nearest = dataclasses.replace(config, interpolation_order=0, contrast_range=0)
  out_images, out_masks = jax.jit(lambda k: augment_batch(k, images, masks, config=nearest))(
      keys(1, 8))
  assert out_masks.dtype == np.uint8
  assert set(np.unique(out_masks)) <= {0, 1}
  np.testing.assert_array_equal(out_images[..., :1] > 100, out_masks == 1)
  assert not np.array_equal(out_masks, masks)  # something moved


def test_each_example_gets_its_own_draw():
  same = np.repeat(IMAGES[:1], 4, axis=0)
  out, _ = augment_batch(keys(2, 4), same, None, config=PAPER1_CLASSIFICATION)
  assert len({np.asarray(x).tobytes() for x in out}) == 4


def test_draws_follow_the_configured_ranges():
  params = sample_transforms(keys(3, 4096), 28, 28, PAPER1_CLASSIFICATION)
  assert float(jnp.abs(params['theta']).max()) <= 10.0
  assert float(jnp.abs(params['tx']).max()) <= 0.2 * 28
  assert float(jnp.abs(params['shear']).max()) <= 0.2
  assert abs(float(params['flip_horizontal'].mean()) - 0.5) < 0.05
  assert not bool(sample_transforms(keys(3, 64), 28, 28,
                                    PAPER1_SEGMENTATION)['flip_vertical'].any())


def test_an_examples_draw_depends_on_its_key_alone():
  # The same four keys, in a batch of 4 or two batches of 2 (as two devices see them).
  whole = sample_transforms(keys(4, 4), 28, 28, PAPER1_CLASSIFICATION)
  halves = [sample_transforms(keys(4, 4)[part], 28, 28, PAPER1_CLASSIFICATION)
            for part in (slice(0, 2), slice(2, 4))]
  for name, values in whole.items():
    np.testing.assert_array_equal(values, np.concatenate([h[name] for h in halves]))


def test_contrast_scales_around_the_channel_mean_and_clips():
  image = jnp.array([[[0.0], [100.0]]])  # mean 50
  np.testing.assert_allclose(adjust_contrast(image, 2.0), [[[0.0], [150.0]]])
  np.testing.assert_allclose(adjust_contrast(image, 0.5), [[[25.0], [75.0]]])


def test_an_unknown_fill_mode_is_refused():
  with pytest.raises(ValueError, match="fill_mode 'edge'"):
    AugmentConfig(fill_mode='edge')


def map_coordinates_per_channel(image, matrix, order, fill_mode):
  """The reference: JAX's map_coordinates on each channel, at warp's sample positions."""
  rows, cols = jnp.meshgrid(jnp.arange(image.shape[0], dtype=jnp.float32),
                            jnp.arange(image.shape[1], dtype=jnp.float32), indexing='ij')
  source = jnp.einsum('ij,jhw->ihw', matrix[:2, :2], jnp.stack([rows, cols]))
  source = source + matrix[:2, 2, None, None]
  return jnp.stack([ndimage.map_coordinates(image[..., c], [source[0], source[1]],
                                            order=order, mode=fill_mode, cval=7.0)
                    for c in range(image.shape[-1])], axis=-1)


@pytest.mark.parametrize('fill_mode', FILL_MODES)
@pytest.mark.parametrize('order', [0, 1])
def test_warp_equals_map_coordinates_per_channel(fill_mode, order):
  """Nearest sampling matches bit for bit; bilinear to 2 ulps, since whether a weight's
  product and sum become one fused multiply-add is the code generator's choice (the same
  with XLA:CPU's defaults, 1-2 ulps apart with the older emitters that conftest.py sets)."""
  # Big shifts and a zoom put many samples off the image, where the fill modes differ.
  rng = np.random.default_rng(order)
  image = jnp.asarray(rng.integers(0, 256, (9, 13, 3)).astype(np.float32))
  for theta, tx, ty, shear, zoom in [(0, 0, 0, 0, 1), (33, 4.5, -6.25, 12, 0.7),
                                     (-170, -11, 9, -25, 1.6)]:
    matrix = keras_affine_matrix(jnp.float32(theta), jnp.float32(tx), jnp.float32(ty),
                                         jnp.float32(shear), jnp.float32(zoom),
                                         jnp.float32(zoom), 9, 13)
    # Jitted, as the training step runs it.
    got = jax.jit(lambda x, m: warp(x, m, order=order, fill_mode=fill_mode, cval=7.0))(
        image, matrix)
    want = jax.jit(lambda x, m: map_coordinates_per_channel(x, m, order, fill_mode))(
        image, matrix)
    if order == 0:
      np.testing.assert_array_equal(np.asarray(got), want)
    else:
      np.testing.assert_array_max_ulp(np.asarray(got), np.asarray(want), maxulp=2)
