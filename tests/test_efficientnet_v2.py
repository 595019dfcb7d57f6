"""EfficientNetV2: Keras' parameter counts, block table, drop rates, features, initialisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax.models import create_model
from skinjax.models.efficientnet_v2 import DepthwiseConv, dense_kernel_init, frozen_layers
from skinjax.train.state import init_variables


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_variables(model, size=64):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


def test_b3_matches_keras_parameter_counts_with_and_without_the_top():
  with_top = abstract_variables(create_model('efficientnetv2_b3'))
  headless = abstract_variables(create_model('efficientnetv2_b3', num_classes=None))
  assert count(with_top) == 14_467_622
  assert count(headless) == 12_930_622
  assert count(headless['batch_stats']) == 109_216  # Keras' non-trainable weights


@pytest.mark.parametrize('variant,with_top,headless', [('b0', 7_200_312, 5_919_312),
                                                       ('b1', 8_212_124, 6_931_124),
                                                       ('b2', 10_178_374, 8_769_374)])
def test_b0_to_b2_match_keras_parameter_counts(variant, with_top, headless):
  name = f'efficientnetv2_{variant}'
  assert count(abstract_variables(create_model(name))) == with_top
  assert count(abstract_variables(create_model(name, num_classes=None))) == headless


def test_b3_scales_the_block_table_as_keras_does():
  model = create_model('efficientnetv2_b3')
  blocks = model.blocks
  per_stage = [sum(b.name.startswith(f'block{i}') for b in blocks) for i in range(1, 7)]
  assert per_stage == [2, 3, 3, 5, 7, 12]  # ceil(1.4 * (1, 2, 2, 3, 5, 8))
  last_of_stage = {b.name[:6]: b.output_filters for b in blocks}
  assert list(last_of_stage.values()) == [16, 40, 56, 112, 136, 232]
  assert blocks[0].input_filters == 40 and model.top_filters == 1536
  params = abstract_variables(model)['params']
  assert sorted(params['block1a']) == ['project_bn', 'project_conv']  # fused, expand ratio 1
  assert sorted(params['block2a']) == ['expand_bn', 'expand_conv', 'project_bn', 'project_conv']
  assert sorted(params['block4a']) == ['bn', 'dwconv2', 'expand_bn', 'expand_conv', 'project_bn',
                                       'project_conv', 'se_expand', 'se_reduce']
  # Squeeze-excite reduces to a quarter of the block input: 56 // 4 = 14 for block4a.
  assert params['block4a']['se_reduce']['kernel'].shape == (1, 1, 224, 14)
  assert params['block4a']['dwconv2']['kernel'].shape == (3, 3, 224, 1)  # Keras' layout


def test_stochastic_depth_divides_by_keras_unscaled_block_count():
  blocks = create_model('efficientnetv2_b3').blocks
  assert blocks[0].drop_rate == 0.0
  # Keras: 0.2 * b / 21 (the B table's unscaled repeats), b counting B3's 32 blocks.
  assert blocks[-1].name == 'block6l'
  assert blocks[-1].drop_rate == pytest.approx(0.2 * 31 / 21)


def test_features_give_the_stride_2_to_32_pyramid_and_the_pooled_top():
  model = create_model('efficientnetv2_b3', num_classes=None)
  variables = abstract_variables(model)
  output, features = jax.eval_shape(
      lambda v: model.apply(v, jnp.zeros((2, 64, 64, 3)), return_features=True), variables)
  assert [f.shape for f in features.pyramid] == [(2, 32, 32, 16), (2, 16, 16, 40),
                                                 (2, 8, 8, 56), (2, 4, 4, 136),
                                                 (2, 2, 2, 1536)]
  assert features.last_conv.shape == (2, 2, 2, 1536)
  assert output.shape == features.pooled.shape == (2, 1536)
  assert output.dtype == jnp.float32


def test_depthwise_and_dense_kernels_follow_keras_fan_out_initialisers():
  channels = 2048
  kernel = DepthwiseConv(3).init(jax.random.key(0), jnp.zeros((1, 4, 4, channels)))['params'][
      'kernel']
  # VarianceScaling(2, fan_out, truncated normal) with Keras' fan_out = 3 * 3 * 1.
  assert kernel.shape == (3, 3, channels, 1)
  assert float(jnp.std(kernel)) == pytest.approx(np.sqrt(2 / 9), rel=0.02)
  assert float(jnp.abs(kernel).max()) <= 2 * np.sqrt(2 / 9) / 0.87962566103423978
  dense = dense_kernel_init(jax.random.key(1), (1536, 1000))
  # VarianceScaling(1/3, fan_out, uniform): limit sqrt(3 * (1/3) / 1000).
  assert float(jnp.abs(dense).max()) == pytest.approx(np.sqrt(1 / 1000), rel=0.01)


def test_trainable_blocks_freezes_the_stem_and_all_but_the_last_blocks():
  names = ['stem_conv', 'stem_bn', 'block1a', 'block2a', 'block2b', 'block10a', 'top_conv',
           'top_bn']
  assert frozen_layers(names, None) == set()
  assert frozen_layers(names, 2) == {'stem_conv', 'stem_bn', 'block1a', 'block2a'}
  # block10a sorts after block2b by stage number, not by string.
  assert frozen_layers(names, 1) == {'stem_conv', 'stem_bn', 'block1a', 'block2a', 'block2b'}


def test_bfloat16_compute_keeps_float32_parameters_statistics_and_logits():
  model = create_model('efficientnetv2_tiny', num_classes=5, dtype=jnp.bfloat16)
  images = jnp.full((2, 32, 32, 3), 128.0)
  variables = init_variables(jax.random.key(0), model, images.shape)
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits, features = jax.jit(lambda v: model.apply(v, images, return_features=True))(variables)
  assert logits.dtype == jnp.float32 and logits.shape == (2, 5)
  assert features.last_conv.dtype == jnp.bfloat16
