"""Keras Xception files convert into the same network: parameter counts, logits, pooled
features and the last conv map (Grad-CAM's), and Keras' preprocess_input.

A seeded Keras model (weights=None, TensorFlow backend, CPU) gets non-trivial BatchNorm
parameters (gamma and beta at random, the moving statistics of random images: one
training-mode pass at momentum 0), so that every tensor matters; each residual branch ends
small (its last BatchNorm's gammas), as in trained networks, so that twelve residual blocks
do not amplify float32 rounding. Sizes: 71 (Keras' smallest; odd maps at every stride,
where the VALID stem, the SAME pools and the strided 1x1 shortcuts meet) and 80 (even
maps down to stride 4).
"""

import functools
import os
import re

os.environ['KERAS_BACKEND'] = 'tensorflow'  # before keras is imported anywhere

import jax
import numpy as np
import pytest

from skinjax.convert.keras_applications import convert
from skinjax.convert.keras_efficientnet_v2 import read_keras_weights
from skinjax.models import create_model, input_size_problem

keras = pytest.importorskip('keras')

TOLERANCE = 1e-4
NAME = 'xception'
LAST_CONV = 'block14_sepconv2_act'
# The last BatchNorm of each residual branch: middle blocks' third, entry and exit blocks'
# second (before the pool).
BRANCH_END = re.compile(r'^block([5-9]|1[0-2])_sepconv3_bn$|^block(2|3|4|13)_sepconv2_bn$')


def preprocess(x):
  return np.asarray(keras.applications.xception.preprocess_input(x))


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
  # Keras counts BatchNorm's moving statistics as (non-trainable) parameters too.
  assert parameter_count(shapes) == keras_model.count_params()
  assert parameter_count(shapes['params']) == sum(
      int(np.prod(w.shape)) for w in keras_model.trainable_weights)


def test_parameter_counts_equal_keras_with_the_top():
  keras_model = keras.applications.Xception(weights=None, input_shape=(299, 299, 3))
  assert_counts_equal(flax_shapes(NAME, 299), keras_model)  # 22,910,480


def test_headless_and_skin_counts_equal_keras():
  """Headless: 20,861,480; under paper 2's head (9 classes), as Keras stacks it."""
  base = keras.applications.Xception(weights=None, include_top=False,
                                     input_shape=(299, 299, 3))
  assert_counts_equal(flax_shapes(NAME, 299, num_classes=None), base)
  layers = keras.layers
  x = layers.BatchNormalization(epsilon=1e-3)(layers.GlobalMaxPooling2D()(base.output))
  x = layers.Dense(256, activation='relu')(layers.Dropout(0.15)(x))
  x = layers.Dense(9)(layers.Dropout(0.2)(layers.BatchNormalization(epsilon=1e-3)(x)))
  assert parameter_count(flax_shapes('xception_skin', 299)) == keras.Model(
      base.input, x).count_params()


def randomised_keras(size, calibration_images, seed=0):
  keras.utils.set_random_seed(seed)
  model = keras.applications.Xception(weights=None, input_shape=(size, size, 3),
                                      classifier_activation=None)
  rng = np.random.default_rng(seed)
  norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  for layer in norms:
    gamma, beta, mean, variance = layer.get_weights()
    low, high = (0.1, 0.3) if BRANCH_END.match(layer.name) else (0.5, 1.5)
    layer.set_weights([rng.uniform(low, high, gamma.shape).astype(np.float32),
                       rng.normal(0, 0.2, beta.shape).astype(np.float32), mean, variance])
    layer.momentum = 0.0
  top = model.get_layer('predictions')
  kernel, bias = top.get_weights()
  top.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
  model(calibration_images, training=True)  # moving statistics <- these images' moments
  for layer in norms:
    layer.momentum = 0.99
  return model


def keras_outputs(model, images):
  outputs = [model.output, model.get_layer('avg_pool').output,
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
def keras_files(size, directory):
  """A randomised Keras Xception at size x size saved as .weights.h5 and .keras; two
  images and its outputs."""
  rng = np.random.default_rng(1)
  calibration = preprocess(rng.uniform(0, 255, (16, size, size, 3)).astype(np.float32))
  model = randomised_keras(size, calibration)
  paths = {suffix: os.path.join(directory, f'{NAME}_{size}{suffix}')
           for suffix in ('.weights.h5', '.keras')}
  model.save_weights(paths['.weights.h5'])
  if size == 71:
    model.save(paths['.keras'])
  images = calibration[:2]
  return paths, images, keras_outputs(model, images)


@pytest.fixture(scope='module')
def directory(tmp_path_factory):
  return str(tmp_path_factory.mktemp('keras_xception'))


def assert_close(size, ours, theirs):
  errors = [float(np.abs(a - b).max()) for a, b in zip(ours, theirs)]
  print(f'{NAME} {size}x{size}: max abs error logits {errors[0]:.3g}, pooled {errors[1]:.3g}, '
        f'last conv map {errors[2]:.3g} (largest |logit| {np.abs(theirs[0]).max():.3g}, '
        f'|map| {np.abs(theirs[2]).max():.3g})')
  assert max(errors) <= TOLERANCE, errors


@pytest.mark.parametrize('size', [71, pytest.param(80, marks=pytest.mark.slow),
                                  pytest.param(299, marks=pytest.mark.slow)])
def test_a_converted_keras_file_gives_keras_outputs(directory, size):
  paths, images, expected = keras_files(size, directory)
  variables, config = convert(paths['.weights.h5'], NAME)
  assert config['num_classes'] == 1000
  assert_close(size, flax_outputs(variables, config, images), expected)


def test_the_shortcut_layers_convert_whatever_the_session_counters(directory):
  # Keras leaves them unnamed: the second model of a session numbers them on from the first.
  paths = [keras_files(size, directory)[0]['.weights.h5'] for size in (71, 80)]
  for path in paths:
    found = read_keras_weights(path)
    shortcuts = sorted((name for name in found if name.startswith('conv2d')),
                       key=lambda name: int(name.partition('_')[2] or 0))
    variables, _ = convert(path, NAME)
    for ours, theirs in zip(['conv2d', 'conv2d_1', 'conv2d_2', 'conv2d_3'], shortcuts):
      np.testing.assert_array_equal(variables['params'][ours]['kernel'], found[theirs][0][1])
  assert read_keras_weights(paths[0]).keys() != read_keras_weights(paths[1]).keys()


def test_the_keras_format_converts_to_the_same_variables(directory):
  paths, _, _ = keras_files(71, directory)
  reference, _ = convert(paths['.weights.h5'], NAME)
  variables, _ = convert(paths['.keras'], NAME)
  assert jax.tree.structure(variables) == jax.tree.structure(reference)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(a, b)


def test_the_preprocessing_option_is_keras_preprocess_input():
  pixels = np.random.default_rng(3).uniform(0, 255, (2, 71, 71, 3)).astype(np.float32)
  plain = create_model('xception_tiny', num_classes=None)
  inside = create_model('xception_tiny', num_classes=None, include_preprocessing=True)
  variables = random_variables(plain, pixels)
  both = jax.jit(lambda v, x, y: (inside.apply(v, x), plain.apply(v, y)))
  np.testing.assert_allclose(*both(variables, pixels, preprocess(pixels.copy())),
                             rtol=1e-5, atol=1e-5)


def test_features_give_the_stride_pyramid():
  model = create_model(NAME, num_classes=None)
  _, features = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), np.zeros((1, 71, 71, 3), np.float32), return_features=True)[0])
  # block1_conv2_act, blocks 2 and 3, the middle flow (block12), block14_sepconv2_act.
  assert [level.shape[1] for level in features.pyramid] == [33, 17, 9, 5, 3]
  assert features.last_conv.shape == (1, 3, 3, 2048) and features.pooled.shape == (1, 2048)


def test_frozen_blocks_get_no_gradient_and_keep_their_statistics():
  model = create_model('xception_tiny', num_classes=3, trainable_blocks=2)
  images = np.random.default_rng(4).normal(size=(2, 71, 71, 3)).astype(np.float32)
  variables = random_variables(model, images)

  def loss(params):
    logits, updates = model.apply({**variables, 'params': params}, images, train=True,
                                  mutable=['batch_stats'])
    return logits.sum(), updates

  grads, updates = jax.jit(jax.grad(loss, has_aux=True))(variables['params'])

  def changed(tree, reference):
    return {name for name in tree if any(
        not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(tree[name]),
                                                 jax.tree.leaves(reference[name])))}
  # The tiny net's units: block1 (stem), 2 .. 4, middle block5, exit block6 (its shortcut
  # conv2d_3 and batch_normalization_3), block7; the last two and the top train.
  norms = {'block6_sepconv1_bn', 'block6_sepconv2_bn', 'batch_normalization_3',
           'block7_sepconv1_bn', 'block7_sepconv2_bn'}
  trained = norms | {'block6_sepconv1', 'block6_sepconv2', 'conv2d_3', 'block7_sepconv1',
                     'block7_sepconv2', 'predictions'}
  assert changed(grads, jax.tree.map(np.zeros_like, grads)) == trained
  assert changed(updates['batch_stats'], variables['batch_stats']) == norms


def test_inputs_below_keras_smallest_are_named():
  assert input_size_problem(create_model(NAME), 70) == (
      'at least 71 (as keras.applications builds Xception)')
  assert input_size_problem(create_model('xception_tiny_skin'), 70) is not None
  assert input_size_problem(create_model('xception_skin'), 71) is None
