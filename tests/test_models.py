"""Paper 1's models: parameter counts, shapes, dtypes, spatial dropout, the registry."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax.models import MODELS, create_model
from skinjax.models.unet import SpatialDropout
from skinjax.train.state import init_variables


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_variables(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def test_deepconvnet_matches_the_keras_parameter_count():
  variables = abstract_variables(create_model('deepconvnet'), (1, 28, 28, 3))
  assert count(variables) == 108_007
  assert list(variables['params']) == ['conv1', 'conv2', 'conv3', 'conv4', 'dense1', 'dense2',
                                       'logits']


def test_unet64_matches_the_keras_parameter_count_with_batchnorm_statistics():
  variables = abstract_variables(create_model('unet'), (1, 224, 224, 3))
  assert count(variables) == 31_055_297
  # Non-trainable: a mean and a variance per BatchNorm channel, two BatchNorms per block:
  # 2 * 2 * (64 + 128 + 256 + 512 + 1024 + 512 + 256 + 128 + 64) = 11,776.
  assert count(variables['batch_stats']) == 11_776


def test_deepconvnet_returns_float32_logits_per_class():
  model = create_model('deepconvnet', num_classes=7)
  variables = init_variables(jax.random.key(0), model, (1, 28, 28, 3))
  logits = model.apply(variables, jnp.ones((5, 28, 28, 3)))
  assert logits.shape == (5, 7) and logits.dtype == jnp.float32


@pytest.mark.parametrize('height,width', [(32, 32), (48, 80)])
def test_unet_returns_one_logit_per_pixel_for_sizes_divisible_by_16(height, width):
  model = create_model('unet', base_width=2)
  variables = abstract_variables(model, (1, height, width, 3))
  logits = jax.eval_shape(model.apply, variables, jnp.ones((2, height, width, 3)))
  assert logits.shape == (2, height, width, 1) and logits.dtype == jnp.float32


def test_unet_refuses_a_size_not_divisible_by_16():
  model = create_model('unet', base_width=2)
  with pytest.raises(ValueError, match=r'30x32 is not divisible by 16'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 30, 32, 3))))


@pytest.mark.parametrize('name,shape', [('deepconvnet', (2, 28, 28, 3)),
                                        ('unet_tiny', (2, 32, 32, 3))])
def test_bfloat16_compute_keeps_float32_parameters_statistics_and_logits(name, shape):
  model = create_model(name, dtype=jnp.bfloat16)
  variables = init_variables(jax.random.key(0), model, shape)
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits, state = model.apply(variables, jnp.ones(shape), train=True, mutable=['batch_stats',
                              'intermediates'], rngs={'dropout': jax.random.key(1)},
                              capture_intermediates=lambda mdl, _: isinstance(mdl, nn.Conv))
  assert logits.dtype == jnp.float32
  conv_outputs = jax.tree.leaves(state['intermediates'])
  assert conv_outputs and all(x.dtype == jnp.bfloat16 for x in conv_outputs)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.get('batch_stats', {})))


def test_spatial_dropout_drops_whole_channels_and_is_identity_in_eval():
  x = jnp.ones((4, 8, 8, 32))
  dropout = SpatialDropout(0.5)
  y = dropout.apply({}, x, train=True, rngs={'dropout': jax.random.key(0)})
  per_channel = y.reshape(4, 64, 32)
  # Each (example, channel) is all dropped or all kept (scaled by 1 / (1 - rate)).
  assert bool(jnp.all(per_channel.min(axis=1) == per_channel.max(axis=1)))
  assert set(np.unique(np.asarray(y)).tolist()) == {0.0, 2.0}
  assert jnp.array_equal(dropout.apply({}, x, train=False), x)


def test_registry_builds_each_model_and_names_the_known_ones_on_a_typo():
  assert {'deepconvnet', 'unet', 'unet_tiny'} <= set(MODELS)
  assert create_model('unet_tiny').base_width == 2 and create_model('unet').base_width == 64
  with pytest.raises(ValueError, match=r"unknown model 'unet64'.*deepconvnet.*unet_tiny"):
    create_model('unet64')
