"""Keras' MaxPooling2D (pool = strides, VALID) as a reshape and a max, with its gradient
written out.

`flax.linen.max_pool` lowers to XLA's reduce-window, whose gradient JAX builds from a
variadic reduce-window over four index iotas and a scatter. On the CPU that backward pass
cost DeepConvNet's training step more than all its convolutions (jax 0.10.2, 2-core AMD EPYC,
64x28x28x16 forward and backward: 15.1 ms, against 0.8 ms here). With the pool equal to the stride the windows
tile the image, so a reshape exposes each window as two axes. Left to autodiff, the max of
those axes splits its gradient between equal maxima (and pays a count for it); TensorFlow
and reduce-window give it all to the first maximum in row-major order, as the backward
pass below does, so values and gradients both equal Keras' and Flax's.
"""

from functools import partial

import jax
import jax.numpy as jnp


def _windows(x, pool):
  """[B, H, W, C] -> [B, rows, ph, cols, pw, C]; what VALID padding drops is dropped."""
  ph, pw = pool
  batch, height, width, channels = x.shape
  rows, cols = height // ph, width // pw
  return x[:, :rows * ph, :cols * pw].reshape(batch, rows, ph, cols, pw, channels)


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x, pool: tuple[int, int]):
  """x: [B, H, W, C] -> [B, H // ph, W // pw, C], pool (ph, pw) and strides equal."""
  return _windows(x, pool).max(axis=(2, 4))


def _max_pool_forward(x, pool):
  windows = _windows(x, pool)
  pooled = windows.max(axis=(2, 4))
  return pooled, (windows, pooled, x.shape)


def _max_pool_backward(pool, saved, grad):
  windows, pooled, shape = saved
  ph, pw = pool
  is_max = windows == pooled[:, :, None, :, None, :]
  taken = jnp.zeros(pooled.shape, bool)
  rows = []
  for i in range(ph):
    cols = []
    for j in range(pw):
      here = is_max[:, :, i, :, j, :]
      cols.append(jnp.where(here & ~taken, grad, jnp.zeros((), grad.dtype)))
      taken = taken | here
    rows.append(jnp.stack(cols, axis=3))
  dx = jnp.stack(rows, axis=2)  # [B, rows, ph, cols, pw, C]
  batch, num_rows, _, num_cols, _, channels = dx.shape
  dx = dx.reshape(batch, num_rows * ph, num_cols * pw, channels)
  dx = jnp.pad(dx, ((0, 0), (0, shape[1] - dx.shape[1]), (0, shape[2] - dx.shape[2]),
                    (0, 0)))
  return (dx.astype(windows.dtype),)


max_pool.defvjp(_max_pool_forward, _max_pool_backward)
