"""Every depthwise implementation computes Keras' DepthwiseConv2D, value and gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax.models import create_model, depthwise
from skinjax.train.state import init_variables

TOLERANCE = dict(rtol=1e-5, atol=1e-5)
# (x shape, kernel size, stride, padding): odd and even sides, both strides, k 3 and 5;
# 'VALID' as Keras' ZeroPadding2D + 'valid' layers use it (strided ones leaving a row unread).
CASES = [
    ((2, 9, 9, 8), 3, 1, 'SAME'),
    ((2, 10, 12, 8), 3, 2, 'SAME'),
    ((2, 9, 7, 8), 3, 2, 'SAME'),
    ((1, 11, 11, 4), 5, 1, 'SAME'),
    ((1, 12, 12, 4), 5, 2, 'SAME'),
    ((2, 9, 9, 8), 3, 1, 'VALID'),
    ((2, 11, 13, 8), 3, 2, 'VALID'),
    ((2, 10, 8, 8), 3, 2, 'VALID'),
    ((1, 12, 13, 4), 5, 2, 'VALID'),
]
# 'auto' lowers to 'shifted' here (tested below), so it needs no cases of its own.
IMPLEMENTATIONS = ['shifted', 'shifted_autodiff']


def _inputs(shape, kernel_size):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, shape[-1], 1)), jnp.float32)
  return x, kernel


def _output_side(size, kernel_size, stride, padding):
  return -(-size // stride) if padding == 'SAME' else (size - kernel_size) // stride + 1


@pytest.mark.parametrize('name', IMPLEMENTATIONS)
@pytest.mark.parametrize('shape, kernel_size, stride, padding', CASES)
def test_forward_matches_the_grouped_convolution(name, shape, kernel_size, stride, padding):
  x, kernel = _inputs(shape, kernel_size)
  want = depthwise.depthwise_conv(x, kernel, stride, implementation='conv', padding=padding)
  got = jax.jit(lambda x, k: depthwise.depthwise_conv(x, k, stride, implementation=name,
                                                      padding=padding))(x, kernel)
  assert got.shape == want.shape == (shape[0], _output_side(shape[1], kernel_size, stride, padding),
                                     _output_side(shape[2], kernel_size, stride, padding),
                                     shape[3])
  np.testing.assert_allclose(got, want, **TOLERANCE)


@pytest.mark.parametrize('name', IMPLEMENTATIONS)
@pytest.mark.parametrize('shape, kernel_size, stride, padding', CASES)
def test_gradients_match_the_grouped_convolution(name, shape, kernel_size, stride, padding):
  x, kernel = _inputs(shape, kernel_size)
  cotangent = jnp.asarray(np.random.default_rng(1).normal(
      size=depthwise.conv(x, kernel, stride, padding).shape), jnp.float32)

  def grads(implementation):
    def loss(x, k):
      return jnp.sum(depthwise.depthwise_conv(x, k, stride, implementation=implementation,
                                              padding=padding) * cotangent)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, kernel)

  for got, want in zip(grads(name), grads('conv')):
    np.testing.assert_allclose(got, want, **TOLERANCE)


def test_auto_lowers_to_shifted_multiplies_on_cpu_and_a_grouped_conv_on_gpu():
  x, kernel = _inputs((1, 8, 8, 4), 3)
  step = jax.jit(jax.grad(lambda x, k: depthwise.depthwise_conv(x, k, 2).sum(), argnums=(0, 1)))
  cpu = step.trace(x, kernel).lower(lowering_platforms=('cpu',)).as_text()
  gpu = step.trace(x, kernel).lower(lowering_platforms=('cuda',)).as_text()
  assert 'feature_group_count' not in cpu
  assert 'feature_group_count = 4' in gpu


def test_bfloat16_keeps_its_dtype_and_accumulates_in_float32():
  x, kernel = _inputs((2, 9, 9, 8), 3)
  got = depthwise.depthwise_conv(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), 1,
                                 implementation='shifted')
  want = depthwise.conv(x, kernel, 1)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=2e-2, atol=5e-2)


def test_use_implementation_applies_inside_the_block_only():
  x, kernel = _inputs((1, 8, 8, 4), 3)
  with depthwise.use_implementation('conv'):
    inside = jax.jit(lambda x, k: depthwise.depthwise_conv(x, k, 1)).trace(x, kernel)
  outside = jax.jit(lambda x, k: depthwise.depthwise_conv(x, k, 1)).trace(x, kernel)
  assert 'conv_general_dilated' in str(inside.jaxpr)
  assert 'platform_index' in str(outside.jaxpr)


def test_unknown_implementation_is_named_in_the_error():
  x, kernel = _inputs((1, 8, 8, 4), 3)
  with pytest.raises(ValueError, match="'fft' is not one of"):
    depthwise.depthwise_conv(x, kernel, 1, implementation='fft')
  with pytest.raises(ValueError, match="'fft' is not one of"):
    with depthwise.use_implementation('fft'):
      pass


# The layer tests above check each implementation's value and gradient; this whole-network
# check compiles EfficientNetV2's gradient twice (40 s on 2 cores), so it is in test-slow.
@pytest.mark.slow
def test_efficientnet_gives_the_same_logits_and_gradients_with_every_implementation():
  model = create_model('efficientnetv2_tiny', num_classes=5)
  images = jnp.asarray(np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)), jnp.float32)
  variables = init_variables(jax.random.key(0), model, images.shape)

  # Inference mode: training-mode BatchNorm over a batch of 2 at 1x1 pixels divides by a
  # near-zero spread and would amplify rounding, whichever implementation rounds.
  def loss(params, implementation):
    with depthwise.use_implementation(implementation):
      logits = model.apply({**variables, 'params': params}, images, train=False)
    return jnp.sum(logits**2), logits

  want_grads, want_logits = jax.grad(loss, has_aux=True)(variables['params'], 'conv')
  got_grads, got_logits = jax.grad(loss, has_aux=True)(variables['params'], 'shifted')
  np.testing.assert_allclose(got_logits, want_logits, **TOLERANCE)
  for got, want in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))


def test_unknown_padding_is_named_in_the_error():
  x, kernel = _inputs((1, 8, 8, 4), 3)
  with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID', got 'same'"):
    depthwise.depthwise_conv(x, kernel, 1, padding='same')
