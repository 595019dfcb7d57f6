"""skinjax.models.upsample.BlockTransposeConv against flax.linen.ConvTranspose with the
kernel equal to the stride and SAME padding (U-Net's up-sampling)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax.models.upsample import BlockTransposeConv


@pytest.mark.parametrize('kernel', [(2, 2), (3, 3), (2, 3)])
@pytest.mark.parametrize('shape', [(2, 5, 7, 3), (1, 4, 4, 6)])
def test_outputs_gradients_and_parameters_equal_conv_transpose(kernel, shape):
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  ours = BlockTransposeConv(4, kernel)
  theirs = nn.ConvTranspose(4, kernel, strides=kernel, padding='SAME')
  variables = theirs.init(jax.random.key(0), x)
  assert (jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x))
          == jax.tree.map(jnp.shape, variables))
  variables = jax.tree.map(
      lambda v: jax.random.normal(jax.random.key(v.size), v.shape), variables)
  np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x),
                             rtol=1e-5, atol=1e-5)
  weights = jax.random.normal(jax.random.key(1), theirs.apply(variables, x).shape)

  def loss(module):
    return lambda v, inputs: (module.apply(v, inputs) * weights).sum()

  ours_grads = jax.grad(loss(ours), argnums=(0, 1))(variables, x)
  theirs_grads = jax.grad(loss(theirs), argnums=(0, 1))(variables, x)
  for a, b in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(theirs_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_bfloat16_compute_keeps_float32_parameters():
  x = jnp.ones((1, 2, 2, 3), jnp.bfloat16)
  module = BlockTransposeConv(2, (2, 2), dtype=jnp.bfloat16)
  variables = module.init(jax.random.key(0), x)
  assert variables['params']['kernel'].dtype == jnp.float32
  assert module.apply(variables, x).dtype == jnp.bfloat16
