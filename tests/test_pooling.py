"""skinjax.models.pooling.max_pool against flax.linen.max_pool (XLA's reduce-window, whose
gradient goes to the first maximum of a window as TensorFlow's does)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax.models.pooling import max_pool


def _reference(x, pool):
  return nn.max_pool(x, pool, strides=pool, padding='VALID')


@pytest.mark.parametrize('shape,pool', [((2, 8, 8, 3), (2, 2)), ((3, 7, 9, 4), (2, 2)),
                                        ((2, 9, 9, 2), (3, 3)), ((1, 6, 8, 5), (2, 4))])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_values_and_gradients_equal_reduce_window(shape, pool, dtype):
  rng = np.random.default_rng(0)
  # Rounded and ReLU'd, so windows hold several equal maxima (zeros and repeats).
  x = jnp.asarray(np.maximum(np.round(rng.normal(size=shape), 1), 0), dtype)
  weights = jnp.asarray(rng.normal(size=(shape[0], shape[1] // pool[0],
                                         shape[2] // pool[1], shape[3])), dtype)
  assert int((x == 0).sum()) > x.size // 4

  def loss(fn):
    return lambda v: (fn(v, pool).astype(jnp.float32) * weights).sum()

  np.testing.assert_array_equal(max_pool(x, pool), _reference(x, pool))
  ours = jax.grad(loss(max_pool))(x)
  theirs = jax.grad(loss(_reference))(x)
  assert ours.dtype == x.dtype
  np.testing.assert_array_equal(np.asarray(ours, np.float32), np.asarray(theirs, np.float32))


def test_a_tied_window_sends_its_gradient_to_its_first_maximum_only():
  x = jnp.ones((1, 2, 2, 1))
  grad = jax.grad(lambda v: max_pool(v, (2, 2)).sum())(x)
  np.testing.assert_array_equal(grad[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])
