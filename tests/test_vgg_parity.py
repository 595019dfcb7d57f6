"""Keras VGG16 files convert into the same network: parameter counts, logits, pooled
features and the last conv map (Grad-CAM's), and Keras' preprocess_input.

A seeded Keras model (weights=None, TensorFlow backend, CPU) gets random biases, so that
every tensor matters. VGG16 has no BatchNorm. Its top flattens block5_pool, so the files
are built at sizes whose last map is 1x1 (32) and 2x2 (77, odd sizes on every pool: 77 ->
38 -> 19 -> 9 -> 4 -> 2), where fc1's rows follow Keras' (h, w, c) order.
"""

import functools
import os

os.environ['KERAS_BACKEND'] = 'tensorflow'  # before keras is imported anywhere

import jax
import numpy as np
import pytest

from skinjax.convert.keras_applications import ConversionError, convert
from skinjax.models import create_model, input_size_problem
from skinjax.models.vgg import input_size_of_fc1

keras = pytest.importorskip('keras')

TOLERANCE = 1e-4
NAME = 'vgg16'
LAST_CONV = 'block5_conv3'


def preprocess(x):
  return np.asarray(keras.applications.vgg16.preprocess_input(x))


def parameter_count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def random_variables(model, images, seed=0):
  """The model's variables drawn in numpy at Keras-like scales (a jitted `init` compiles
  for longer than the forward pass itself)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name in ('scale', 'var'):
      return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if name in ('bias', 'mean'):
      return rng.normal(0, 0.1, shape).astype(np.float32)
    fan_in = np.prod(shape[:-1]) // (shape[-2] if name == 'depthwise_kernel' else 1)
    return rng.normal(0, fan_in**-0.5, shape).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def flax_shapes(name, size, **kwargs):
  model = create_model(name, **kwargs)
  return jax.eval_shape(lambda: model.init(jax.random.key(0),
                                           np.zeros((1, size, size, 3), np.float32)))


def assert_counts_equal(shapes, keras_model):
  assert parameter_count(shapes) == keras_model.count_params()
  assert parameter_count(shapes['params']) == sum(
      int(np.prod(w.shape)) for w in keras_model.trainable_weights)


def test_parameter_counts_equal_keras_with_the_top():
  keras_model = keras.applications.VGG16(weights=None, input_shape=(224, 224, 3))
  assert_counts_equal(flax_shapes(NAME, 224), keras_model)  # 138,357,544


def test_headless_and_skin_counts_equal_keras():
  """Headless: 14,714,688; under paper 2's head (9 classes), as Keras stacks it."""
  base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
  assert_counts_equal(flax_shapes(NAME, 224, num_classes=None), base)
  layers = keras.layers
  x = layers.BatchNormalization(epsilon=1e-3)(layers.GlobalMaxPooling2D()(base.output))
  x = layers.Dense(256, activation='relu')(layers.Dropout(0.15)(x))
  x = layers.Dense(9)(layers.Dropout(0.2)(layers.BatchNormalization(epsilon=1e-3)(x)))
  assert parameter_count(flax_shapes('vgg16_skin', 224)) == keras.Model(
      base.input, x).count_params()


def randomised_keras(size, seed=0):
  keras.utils.set_random_seed(seed)
  model = keras.applications.VGG16(weights=None, input_shape=(size, size, 3),
                                   classifier_activation=None)
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
  return model


def keras_outputs(model, images):
  pool = model.get_layer('block5_pool').output
  outputs = [model.output, keras.layers.GlobalAveragePooling2D()(pool),
             model.get_layer(LAST_CONV).output]
  return [np.asarray(o) for o in keras.Model(model.input, outputs)(images, training=False)]


@functools.cache
def jitted_forward(num_classes):
  model = create_model(NAME, num_classes=num_classes)
  return jax.jit(lambda v, x: model.apply(v, x, return_features=True))


def flax_outputs(variables, config, images):
  logits, features = jitted_forward(config['num_classes'])(variables, images)
  return [np.asarray(logits), np.asarray(features.pooled), np.asarray(features.last_conv)]


@functools.cache
def keras_file(size, directory):
  """A randomised Keras VGG16 at size x size saved as .weights.h5; two images, its outputs."""
  rng = np.random.default_rng(1)
  images = preprocess(rng.uniform(0, 255, (2, size, size, 3)).astype(np.float32))
  model = randomised_keras(size)
  path = os.path.join(directory, f'{NAME}_{size}.weights.h5')
  model.save_weights(path)
  return path, images, keras_outputs(model, images)


@pytest.fixture(scope='module')
def directory(tmp_path_factory):
  return str(tmp_path_factory.mktemp('keras_vgg16'))


def assert_close(size, ours, theirs):
  errors = [float(np.abs(a - b).max()) for a, b in zip(ours, theirs)]
  print(f'{NAME} {size}x{size}: max abs error logits {errors[0]:.3g}, pooled {errors[1]:.3g}, '
        f'last conv map {errors[2]:.3g} (largest |logit| {np.abs(theirs[0]).max():.3g}, '
        f'|map| {np.abs(theirs[2]).max():.3g})')
  assert max(errors) <= TOLERANCE, errors


# The file's fc1 rows give the size it was built at (the smallest size of that map).
@pytest.mark.parametrize('size, built_size', [(32, 32), (77, 64),
                                              pytest.param(224, 224, marks=pytest.mark.slow)])
def test_a_converted_keras_file_gives_keras_outputs(directory, size, built_size):
  path, images, expected = keras_file(size, directory)
  variables, config = convert(path, NAME)
  assert config['num_classes'] == 1000 and config['image_size'] == built_size
  assert_close(size, flax_outputs(variables, config, images), expected)


def test_a_headless_conversion_takes_the_convolutions_alone(directory):
  path, images, expected = keras_file(77, directory)
  with pytest.raises(ConversionError, match=r'unexpected layer fc1 in the file, '
                                            r'shapes \[\(2048, 4096\), \(4096,\)\]'):
    convert(path, NAME, include_top=False)
  variables, config = convert(path, NAME, include_top=False, skip_unexpected=True)
  assert config['num_classes'] is None and config['image_size'] == 224
  pooled, features = jitted_forward(None)(variables, images)
  np.testing.assert_allclose(pooled, expected[1], atol=TOLERANCE, rtol=0)


def test_fc1_rows_give_the_input_size_keras_built_the_top_for():
  assert input_size_of_fc1(7 * 7 * 512) == 224  # Keras' default VGG16
  assert input_size_of_fc1(512) == 32
  with pytest.raises(ValueError, match='not a square map of 512 channels'):
    input_size_of_fc1(3 * 512)


def test_the_preprocessing_option_is_keras_preprocess_input():
  pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  plain = create_model('vgg16_tiny', num_classes=None)
  inside = create_model('vgg16_tiny', num_classes=None, include_preprocessing=True)
  variables = random_variables(plain, pixels)
  both = jax.jit(lambda v, x, y: (inside.apply(v, x), plain.apply(v, y)))
  np.testing.assert_allclose(*both(variables, pixels, preprocess(pixels.copy())),
                             rtol=1e-5, atol=1e-5)


def test_features_give_the_stride_pyramid():
  model = create_model(NAME, num_classes=None)
  _, features = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32), return_features=True)[0])
  assert [level.shape[1] for level in features.pyramid] == [32, 16, 8, 4, 2]
  # Grad-CAM's map is block5_conv3, at stride 16, before block5_pool.
  assert features.last_conv.shape == (1, 4, 4, 512) and features.pooled.shape == (1, 512)


def test_frozen_blocks_get_no_gradient():
  model = create_model('vgg16_tiny', num_classes=3, trainable_blocks=2)
  images = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype(np.float32)
  variables = random_variables(model, images)
  grads = jax.jit(jax.grad(lambda p: model.apply({'params': p}, images, train=True).sum()))(
      variables['params'])
  moved = {name for name, leaves in grads.items()
           if any(np.abs(leaf).max() > 0 for leaf in jax.tree.leaves(leaves))}
  assert moved == {'block4_conv1', 'block4_conv2', 'block4_conv3', 'block5_conv1', 'fc1',
                   'fc2', 'predictions'}


def test_a_head_on_a_frozen_backbone_moves_no_backbone_weight():
  # Paper 2's head reads last_conv (block5_conv3), inside the last block.
  model = create_model('vgg16_tiny_skin', trainable_blocks=0)
  images = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  variables = random_variables(model, images)

  def loss(params):
    logits, _ = model.apply({**variables, 'params': params}, images, train=True,
                            mutable=['batch_stats'], rngs={'dropout': jax.random.key(1)})
    return logits.sum()
  grads = jax.jit(jax.grad(loss))(variables['params'])
  assert all(np.abs(leaf).max() == 0 for leaf in jax.tree.leaves(grads['backbone']))
  assert any(np.abs(leaf).max() > 0 for leaf in jax.tree.leaves(grads['head']))


def test_inputs_below_keras_smallest_are_named():
  assert input_size_problem(create_model(NAME), 31) == (
      'at least 32 (as keras.applications builds VGG)')
  assert input_size_problem(create_model('vgg16_tiny_skin'), 31) is not None
  assert input_size_problem(create_model('vgg16_skin'), 32) is None
