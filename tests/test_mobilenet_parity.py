"""Keras MobileNet and MobileNetV2 files convert into the same networks: parameter counts,
logits, pooled features and the last conv map (Grad-CAM's), and Keras' preprocess_input.

A seeded Keras model (weights=None, TensorFlow backend, CPU) gets non-trivial BatchNorm
parameters (gamma and beta at random, the moving statistics of random images: one
training-mode pass at momentum 0) and random biases, so that every tensor matters; V2's
residual branches end small (their `_project_BN` gammas and betas), as in trained networks.
The other betas centre on 0.5, so that most units pass ReLU6: centred on 0, half of them are
cut and each of MobileNet's 27 convolutions grows float32 rounding some 1.3x (Keras' and ours
alike, measured against a float64 run), to 1.1e-4 at the last conv map. 35 pixels makes odd
maps meet the explicit paddings: MobileNet's ((0, 1), (0, 1)) and V2's `correct_pad` (on 18-
and 9-pixel maps, one even and one odd).
"""

import functools
import os
import sys

os.environ['KERAS_BACKEND'] = 'tensorflow'  # before keras is imported anywhere

import jax
import numpy as np
import pytest

from skinjax.convert.keras_applications import convert
from skinjax.models import create_model, input_size_problem

keras = pytest.importorskip('keras')

TOLERANCE = 1e-4
KERAS_MODELS = {'mobilenet': lambda **kw: keras.applications.MobileNet(**kw),
                'mobilenetv2': lambda **kw: keras.applications.MobileNetV2(**kw)}
LAST_CONV = {'mobilenet': 'conv_pw_13_relu', 'mobilenetv2': 'out_relu'}
LAST_FILTERS = {'mobilenet': 1024, 'mobilenetv2': 1280}
PREPROCESS = {'mobilenet': lambda x: keras.applications.mobilenet.preprocess_input(x),
              'mobilenetv2': lambda x: keras.applications.mobilenet_v2.preprocess_input(x)}


def parameter_count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def random_variables(model, size, seed=0):
  """Variables of `model` drawn in NumPy (`init` compiles its RNG: seconds per model), at
  unit gain: kernels N(0, 1 / fan-in) (a depthwise kernel's fan-in is its k * k taps)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             np.zeros((1, size, size, 3), np.float32)))

  def draw(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name == 'kernel':
      fan_in = np.prod(shape[:2]) if shape[-1] == 1 else np.prod(shape[:-1])
      value = rng.normal(0, 1 / np.sqrt(fan_in), shape)
    elif name in ('scale', 'var'):
      value = rng.uniform(0.5, 1.5, shape)
    else:  # biases, BatchNorm betas and means
      value = rng.normal(0, 0.1, shape)
    return value.astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def our_shapes(name, size, **kwargs):
  model = create_model(name, **kwargs)
  return jax.eval_shape(lambda: model.init(jax.random.key(0),
                                           np.zeros((1, size, size, 3), np.float32)))


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
@pytest.mark.parametrize('include_top', [True, False])
def test_parameter_counts_equal_keras(name, include_top):
  keras_model = KERAS_MODELS[name](weights=None, include_top=include_top,
                                   input_shape=(224, 224, 3))
  shapes = our_shapes(name, 224, num_classes=1000 if include_top else None)
  # Keras counts BatchNorm's moving statistics as (non-trainable) parameters too.
  assert parameter_count(shapes) == keras_model.count_params()
  assert parameter_count(shapes['params']) == sum(
      int(np.prod(w.shape)) for w in keras_model.trainable_weights)


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
def test_the_skin_variant_is_the_headless_keras_model_under_paper_2s_head(name):
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks'))
  from keras_models import skin_head
  backbone = KERAS_MODELS[name](weights=None, include_top=False, input_shape=(224, 224, 3))
  keras_model = keras.Model(backbone.input, skin_head(backbone.output, 9))
  assert parameter_count(our_shapes(f'{name}_skin', 224)) == keras_model.count_params()


def randomised_keras(name, size, calibration_images, seed=0):
  keras.utils.set_random_seed(seed)
  model = KERAS_MODELS[name](weights=None, input_shape=(size, size, 3),
                             classifier_activation=None)
  rng = np.random.default_rng(seed)
  residual = {layer.name[:-len('add')] for layer in model.layers
              if isinstance(layer, keras.layers.Add)}
  norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  momenta = {}
  for layer in norms:
    gamma, beta, mean, variance = layer.get_weights()
    small = layer.name.endswith('project_BN') and layer.name[:-len('project_BN')] in residual
    (low, high), centre, spread = ((0.1, 0.3), 0.0, 0.05) if small else ((0.5, 1.5), 0.5, 0.2)
    layer.set_weights([rng.uniform(low, high, gamma.shape).astype(np.float32),
                       rng.normal(centre, spread, beta.shape).astype(np.float32), mean,
                       variance])
    momenta[layer.name], layer.momentum = layer.momentum, 0.0
  for layer in model.layers:
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.use_bias:
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
  model(calibration_images, training=True)  # moving statistics <- these images' moments
  for layer in norms:
    layer.momentum = momenta[layer.name]
  return model


def keras_outputs(name, model, images):
  pool = next(l for l in model.layers if isinstance(l, keras.layers.GlobalAveragePooling2D))
  outputs = [model.output, pool.output, model.get_layer(LAST_CONV[name]).output]
  logits, pooled, last_conv = keras.Model(model.input, outputs)(images, training=False)
  # MobileNet pools with keepdims=True.
  return [np.asarray(logits), np.asarray(pooled).reshape(len(images), -1),
          np.asarray(last_conv)]


@functools.cache
def jitted_forward(name, num_classes):
  model = create_model(name, num_classes=num_classes)
  return jax.jit(lambda v, x: model.apply(v, x, return_features=True))


def flax_outputs(variables, config, images):
  logits, features = jitted_forward(config['model'], config['num_classes'])(variables, images)
  return [np.asarray(logits), np.asarray(features.pooled), np.asarray(features.last_conv)]


def preprocessed_images(name, rng, count, size):
  return np.asarray(PREPROCESS[name](rng.uniform(0, 255, (count, size, size, 3))
                                     .astype(np.float32)))


@functools.cache
def keras_files(name, size, directory):
  """A randomised Keras model at size x size saved as .weights.h5 and .keras; its outputs."""
  rng = np.random.default_rng(1)
  calibration = preprocessed_images(name, rng, 32, size)
  model = randomised_keras(name, size, calibration)
  paths = {suffix: os.path.join(directory, f'{name}_{size}{suffix}')
           for suffix in ('.weights.h5', '.keras')}
  model.save_weights(paths['.weights.h5'])
  model.save(paths['.keras'])
  images = calibration[:2]
  return paths, images, keras_outputs(name, model, images)


@pytest.fixture(scope='module')
def directory(tmp_path_factory):
  return str(tmp_path_factory.mktemp('keras_mobilenets'))


def assert_close(name, size, ours, theirs):
  errors = [float(np.abs(a - b).max()) for a, b in zip(ours, theirs)]
  print(f'{name} {size}x{size}: max abs error logits {errors[0]:.3g}, pooled {errors[1]:.3g}, '
        f'last conv map {errors[2]:.3g} (largest |logit| {np.abs(theirs[0]).max():.3g}, '
        f'|map| {np.abs(theirs[2]).max():.3g})')
  assert max(errors) <= TOLERANCE, errors


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
@pytest.mark.parametrize('size', [35, pytest.param(224, marks=pytest.mark.slow)])
def test_a_converted_keras_file_gives_keras_outputs(directory, name, size):
  paths, images, expected = keras_files(name, size, directory)
  variables, config = convert(paths['.weights.h5'], name)
  assert config['num_classes'] == 1000
  assert_close(name, size, flax_outputs(variables, config, images), expected)


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
def test_a_keras_file_converts_to_the_same_variables_as_its_weights(directory, name):
  paths, _, _ = keras_files(name, 35, directory)
  reference, _ = convert(paths['.weights.h5'], name)
  variables, _ = convert(paths['.keras'], name)
  assert jax.tree.structure(variables) == jax.tree.structure(reference)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
def test_the_preprocessing_option_is_keras_preprocess_input(name):
  pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  plain = create_model(f'{name}_tiny', num_classes=None)
  inside = create_model(f'{name}_tiny', num_classes=None, include_preprocessing=True)
  variables = random_variables(plain, 32)
  np.testing.assert_allclose(jax.jit(inside.apply)(variables, pixels),
                             jax.jit(plain.apply)(variables, PREPROCESS[name](pixels.copy())),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
def test_features_give_the_stride_pyramid(name):
  model = create_model(name, num_classes=None)
  _, features = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32), return_features=True)[0])
  assert [level.shape[1] for level in features.pyramid] == [32, 16, 8, 4, 2]
  assert features.last_conv.shape == (1, 2, 2, LAST_FILTERS[name])
  assert features.pooled.shape == (1, LAST_FILTERS[name])


@pytest.mark.parametrize('name', ['mobilenet_tiny', 'mobilenetv2_tiny'])
def test_the_tiny_variant_keeps_the_five_strides_at_keras_smallest_input(name):
  model = create_model(name)
  logits, features = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32), return_features=True)[0])
  assert [level.shape[1] for level in features.pyramid] == [16, 8, 4, 2, 1]
  assert logits.shape == (1, 1000)


def test_mobilenet_drops_out_before_conv_preds_in_training_only():
  model = create_model('mobilenet_tiny', dropout_rate=0.5)
  images = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  variables = random_variables(model, 32)

  @functools.partial(jax.jit, static_argnums=1)
  def logits(seed, train):
    out = model.apply(variables, images, train=train, mutable=['batch_stats'],
                      rngs={'dropout': jax.random.key(seed)})[0]
    return out

  assert not np.allclose(logits(1, True), logits(2, True))
  np.testing.assert_array_equal(logits(1, False), logits(2, False))


@pytest.mark.parametrize('name, family', [('mobilenet', 'MobileNet'),
                                          ('mobilenetv2', 'MobileNetV2')])
def test_inputs_below_keras_smallest_are_named(name, family):
  assert input_size_problem(create_model(name), 31) == (
      f'at least 32 (as keras.applications builds {family})')
  assert input_size_problem(create_model(f'{name}_tiny_skin'), 31) is not None
  assert input_size_problem(create_model(f'{name}_skin'), 32) is None


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
def test_a_file_with_its_own_top_converts_with_its_class_count(tmp_path, name):
  # MobileNet's top is a 1x1 convolution (conv_preds), MobileNetV2's a Dense (predictions).
  model = KERAS_MODELS[name](weights=None, classes=7, input_shape=(32, 32, 3))
  path = str(tmp_path / f'{name}_7.weights.h5')
  model.save_weights(path)
  variables, config = convert(path, name)
  assert config['num_classes'] == 7
  assert parameter_count(variables['params']) == sum(
      int(np.prod(w.shape)) for w in model.trainable_weights)
