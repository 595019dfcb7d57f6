"""Keras ResNet50 and ResNet50V2 files convert into the same networks: parameter counts,
logits, pooled features and the last conv map (Grad-CAM's), and Keras' preprocess_input.

A seeded Keras model (weights=None, TensorFlow backend, CPU) gets non-trivial BatchNorm
parameters (gamma and beta at random, the moving statistics of random images: one
training-mode pass at momentum 0) and random biases, so that every tensor matters; the
residual branches end small, as in trained networks (V1: the last BatchNorm's gammas; V2:
the last 1x1 kernel), so that 16 blocks do not amplify float32 rounding.
"""

import functools
import os

os.environ['KERAS_BACKEND'] = 'tensorflow'  # before keras is imported anywhere

import h5py
import jax
import numpy as np
import pytest

from skinjax.convert.keras_applications import ConversionError, convert
from skinjax.models import create_model, input_size_problem

keras = pytest.importorskip('keras')

TOLERANCE = 1e-4
KERAS_MODELS = {'resnet50': lambda **kw: keras.applications.ResNet50(**kw),
                'resnet50v2': lambda **kw: keras.applications.ResNet50V2(**kw)}
LAST_CONV = {'resnet50': 'conv5_block3_out', 'resnet50v2': 'post_relu'}
PREPROCESS = {'resnet50': lambda x: keras.applications.resnet.preprocess_input(x),
              'resnet50v2': lambda x: keras.applications.resnet_v2.preprocess_input(x)}


def parameter_count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
@pytest.mark.parametrize('include_top', [True, False])
def test_parameter_counts_equal_keras(name, include_top):
  keras_model = KERAS_MODELS[name](weights=None, include_top=include_top,
                                   input_shape=(224, 224, 3))
  model = create_model(name, num_classes=1000 if include_top else None)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 224, 224, 3),
                                                                          np.float32)))
  # Keras counts BatchNorm's moving statistics as (non-trainable) parameters too.
  assert parameter_count(shapes) == keras_model.count_params()
  assert parameter_count(shapes['params']) == sum(
      int(np.prod(w.shape)) for w in keras_model.trainable_weights)


def randomised_keras(name, size, calibration_images, seed=0):
  keras.utils.set_random_seed(seed)
  model = KERAS_MODELS[name](weights=None, input_shape=(size, size, 3),
                             classifier_activation=None)
  rng = np.random.default_rng(seed)
  norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  for layer in norms:
    gamma, beta, mean, variance = layer.get_weights()
    low, high = (0.1, 0.3) if layer.name.endswith('_3_bn') else (0.5, 1.5)
    layer.set_weights([rng.uniform(low, high, gamma.shape).astype(np.float32),
                       rng.normal(0, 0.2, beta.shape).astype(np.float32), mean, variance])
    layer.momentum = 0.0
  for layer in model.layers:
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.use_bias:
      kernel, bias = layer.get_weights()
      if layer.name.endswith('_3_conv'):  # V2's branches end here, without a BatchNorm
        kernel = kernel * 0.3
      layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
  model(calibration_images, training=True)  # moving statistics <- these images' moments
  for layer in norms:
    layer.momentum = 0.99
  return model


def keras_outputs(name, model, images):
  outputs = [model.output, model.get_layer('avg_pool').output,
             model.get_layer(LAST_CONV[name]).output]
  return [np.asarray(o) for o in keras.Model(model.input, outputs)(images, training=False)]


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
  """A randomised Keras model at size x size saved in the three formats; its outputs."""
  rng = np.random.default_rng(1)
  calibration = preprocessed_images(name, rng, 32, size)
  model = randomised_keras(name, size, calibration)
  paths = {suffix: os.path.join(directory, f'{name}_{size}{suffix}')
           for suffix in ('.weights.h5', '.keras', '.h5')}
  model.save_weights(paths['.weights.h5'])
  model.save(paths['.keras'])
  model.save(paths['.h5'])
  images = calibration[:2]
  return paths, images, keras_outputs(name, model, images)


@pytest.fixture(scope='module')
def directory(tmp_path_factory):
  return str(tmp_path_factory.mktemp('keras_resnets'))


def assert_close(name, size, ours, theirs):
  errors = [float(np.abs(a - b).max()) for a, b in zip(ours, theirs)]
  print(f'{name} {size}x{size}: max abs error logits {errors[0]:.3g}, pooled {errors[1]:.3g}, '
        f'last conv map {errors[2]:.3g} (largest |logit| {np.abs(theirs[0]).max():.3g}, '
        f'|map| {np.abs(theirs[2]).max():.3g})')
  assert max(errors) <= TOLERANCE, errors


# 64: every map even; 75: odd sizes meet the explicit padding and the strided 1x1s.
@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
@pytest.mark.parametrize('size', [75, pytest.param(64, marks=pytest.mark.slow),
                                  pytest.param(224, marks=pytest.mark.slow)])
def test_a_converted_keras_file_gives_keras_outputs(directory, name, size):
  paths, images, expected = keras_files(name, size, directory)
  variables, config = convert(paths['.weights.h5'], name)
  assert config['num_classes'] == 1000
  assert_close(name, size, flax_outputs(variables, config, images), expected)


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
@pytest.mark.parametrize('suffix', ['.keras', '.h5'])
def test_each_keras_format_converts_to_the_same_variables(directory, name, suffix):
  paths, _, _ = keras_files(name, 75, directory)
  reference, _ = convert(paths['.weights.h5'], name)
  variables, _ = convert(paths[suffix], name)
  assert jax.tree.structure(variables) == jax.tree.structure(reference)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(a, b)


def test_a_keras3_file_without_layer_names_is_refused_in_one_line(directory, tmp_path):
  # Its groups follow Keras' graph order, where V2's conv2_block1_0_conv and _3_conv (both
  # 1x1, 64 -> 256) could swap unseen: the converter refuses rather than guesses.
  paths, _, _ = keras_files('resnet50v2', 75, directory)
  unnamed = tmp_path / 'unnamed.weights.h5'
  unnamed.write_bytes(open(paths['.weights.h5'], 'rb').read())
  with h5py.File(unnamed, 'r+') as f:
    for group in f['layers'].values():
      if 'vars' in group:
        group['vars'].attrs.pop('name', None)
  with pytest.raises(ConversionError, match=r'unnamed.weights.h5: its \d+ weight groups carry '
                                            r'no layer names .*save it again'):
    convert(str(unnamed), 'resnet50v2')


def test_a_file_of_the_other_family_lists_every_misfit(directory):
  paths, _, _ = keras_files('resnet50', 75, directory)
  with pytest.raises(ConversionError) as error:
    convert(paths['.keras'], 'resnet50v2')
  message = str(error.value)
  assert 'missing layer post_bn: expected shapes [(2048,), (2048,), (2048,), (2048,)]' in message
  assert 'unexpected layer conv1_bn in the file' in message
  assert 'shape mismatch at conv2_block1_3_conv/kernel' not in message  # same shapes there
  assert 'missing layer conv2_block1_preact_bn' in message


def test_a_headless_conversion_refuses_the_top_unless_told_to_skip_it(directory):
  paths, _, _ = keras_files('resnet50', 75, directory)
  with pytest.raises(ConversionError, match=r'unexpected layer predictions in the file, '
                                            r'shapes \[\(2048, 1000\), \(1000,\)\]'):
    convert(paths['.keras'], 'resnet50', include_top=False)
  variables, config = convert(paths['.keras'], 'resnet50', include_top=False,
                              skip_unexpected=True)
  assert config['num_classes'] is None and 'predictions' not in variables['params']


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
def test_the_preprocessing_option_is_keras_preprocess_input(name):
  pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  tiny = {'resnet50': 'resnet_tiny', 'resnet50v2': 'resnetv2_tiny'}[name]  # the same preprocessing
  plain = create_model(tiny, num_classes=None)
  inside = create_model(tiny, num_classes=None, include_preprocessing=True)
  variables = jax.jit(plain.init)(jax.random.key(0), pixels)
  np.testing.assert_allclose(inside.apply(variables, pixels),
                             plain.apply(variables, PREPROCESS[name](pixels.copy())),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', sorted(KERAS_MODELS))
def test_features_give_the_stride_pyramid(name):
  model = create_model(name, num_classes=None)
  _, features = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32), return_features=True)[0])
  assert [level.shape[1] for level in features.pyramid] == [32, 16, 8, 4, 2]
  assert features.last_conv.shape == (1, 2, 2, 2048) and features.pooled.shape == (1, 2048)


def test_inputs_below_keras_smallest_are_named():
  assert input_size_problem(create_model('resnet50'), 28) == (
      'at least 32 (as keras.applications builds ResNet)')
  assert input_size_problem(create_model('resnet50_skin'), 28) is not None
  assert input_size_problem(create_model('resnet50_skin'), 32) is None


def test_the_launcher_names_a_truncated_file_in_one_line_and_writes_nothing(directory,
                                                                            tmp_path):
  import subprocess
  import sys
  paths, _, _ = keras_files('resnet50', 75, directory)
  broken = tmp_path / 'broken.weights.h5'
  broken.write_bytes(open(paths['.weights.h5'], 'rb').read()[:300_000])
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run([sys.executable, os.path.join(repo, 'launch', 'convert_weights.py'),
                           f'--keras_weights={broken}', '--model=resnet50',
                           f'--output={tmp_path / "out"}'], capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 2
  assert f'error: --keras_weights={broken}: cannot be read (' in result.stderr
  assert not (tmp_path / 'out').exists()
