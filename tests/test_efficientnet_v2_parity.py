"""Keras EfficientNetV2-B3 files convert into the same network: logits and pooled features.

A seeded Keras B3 (TensorFlow backend, CPU) gets random non-trivial weights: BatchNorm
gamma and beta drawn at random, moving statistics calibrated on random images (one
training-mode pass at momentum 0, so they are those images' means and variances, far
from the initial 0 and 1), random SE and top biases. Outputs are compared on two of the
calibration images, where the network is as well-conditioned as a trained one.

Why calibrate: a random B3 is chaotic. With hand-drawn statistics its activations reach
1e3-1e4 by block 6 and float32 rounding (Keras and Flax each stay within 1e-4 of a float64
run, i.e. about 1e-5 relative) grows past 1e-3 absolute. Even calibrated, unseen noise
images can push a draw's logits to 10-25 and its error to 2e-4 (seen for one seed), while
on calibration images the error stays near 5e-6.
"""

import functools
import os
import subprocess
import sys

os.environ['KERAS_BACKEND'] = 'tensorflow'  # before keras is imported anywhere

import h5py
import jax
import numpy as np
import pytest

from skinjax.convert.keras_efficientnet_v2 import ConversionError, convert, load_converted
from skinjax.models import create_model

keras = pytest.importorskip('keras')

TOLERANCE = 1e-4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def randomised_keras_b3(size, calibration_images, seed=0):
  keras.utils.set_random_seed(seed)
  model = keras.applications.EfficientNetV2B3(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
  rng = np.random.default_rng(seed)
  norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  for layer in norms:
    gamma, beta, mean, variance = layer.get_weights()
    # Residual branches small, as in trained networks, so depth does not amplify rounding.
    low, high = (0.1, 0.3) if layer.name.endswith('project_bn') else (0.3, 0.7)
    layer.set_weights([rng.uniform(low, high, gamma.shape).astype(np.float32),
                       rng.normal(0, 0.2, beta.shape).astype(np.float32), mean, variance])
    layer.momentum = 0.0
  for layer in model.layers:
    if isinstance(layer, keras.layers.Dropout):
      layer.rate = 0.0
    if layer.name.endswith(('se_reduce', 'se_expand', 'predictions')):
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
  model(calibration_images, training=True)  # moving statistics <- these images' moments
  for layer in norms:
    layer.momentum = 0.9
    assert np.abs(layer.moving_variance.numpy() - 1).max() > 0.1, layer.name
  return model


def keras_outputs(model, images):
  both = keras.Model(model.input, [model.output, model.get_layer('avg_pool').output])
  logits, pooled = both(images, training=False)
  return np.asarray(logits), np.asarray(pooled)


@functools.cache
def jitted_forward(name, num_classes):
  model = create_model(name, num_classes=num_classes)
  return jax.jit(lambda v, x: model.apply(v, x, return_features=True))


def flax_outputs(variables, config, images):
  logits, features = jitted_forward(config['model'], config['num_classes'])(variables, images)
  return np.asarray(logits), np.asarray(features.pooled)


def random_images(rng, count, size):
  return rng.uniform(0, 255, (count, size, size, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def keras_b3_64(tmp_path_factory):
  """A randomised Keras B3 at 64x64 saved in every format, and its outputs."""
  rng = np.random.default_rng(1)
  calibration = random_images(rng, 64, 64)
  model = randomised_keras_b3(64, calibration)
  directory = tmp_path_factory.mktemp('keras_b3')
  paths = {suffix: str(directory / f'b3{suffix}') for suffix in ('.weights.h5', '.keras', '.h5')}
  model.save_weights(paths['.weights.h5'])
  model.save(paths['.keras'])
  model.save(paths['.h5'])  # legacy HDF5, as Keras' downloadable ImageNet files
  images = calibration[:2]
  return paths, images, keras_outputs(model, images)


@pytest.mark.parametrize('suffix', ['.weights.h5', '.keras', '.h5'])
def test_each_keras_format_converts_to_the_same_logits_and_pooled_features(keras_b3_64,
                                                                           suffix):
  paths, images, (keras_logits, keras_pooled) = keras_b3_64
  variables, config = convert(paths[suffix], 'b3')
  assert config['num_classes'] == 1000 and config['report']['converted_arrays'] == 538
  logits, pooled = flax_outputs(variables, config, images)
  logits_error = np.abs(logits - keras_logits).max()
  pooled_error = np.abs(pooled - keras_pooled).max()
  print(f'{suffix} 64x64: max abs error logits {logits_error:.3g}, pooled {pooled_error:.3g} '
        f'(largest |logit| {np.abs(keras_logits).max():.3g})')
  assert logits_error <= TOLERANCE and pooled_error <= TOLERANCE


def test_a_keras3_file_without_layer_names_converts_by_class_counters(keras_b3_64, tmp_path):
  paths, images, (keras_logits, _) = keras_b3_64
  unnamed = tmp_path / 'unnamed.weights.h5'
  unnamed.write_bytes(open(paths['.weights.h5'], 'rb').read())
  with h5py.File(unnamed, 'r+') as f:
    for group in f['layers'].values():
      if 'vars' in group:
        group['vars'].attrs.pop('name', None)
  variables, config = convert(str(unnamed), 'b3')
  logits, _ = flax_outputs(variables, config, images)
  assert np.abs(logits - keras_logits).max() <= TOLERANCE


def test_a_headless_conversion_refuses_the_top_unless_told_to_skip_it(keras_b3_64):
  paths, _, _ = keras_b3_64
  with pytest.raises(ConversionError, match=r'unexpected layer predictions in the file, '
                                            r'shapes \[\(1536, 1000\), \(1000,\)\]'):
    convert(paths['.keras'], 'b3', include_top=False)
  variables, config = convert(paths['.keras'], 'b3', include_top=False, skip_unexpected=True)
  assert config['num_classes'] is None and 'predictions' not in variables['params']
  assert config['report']['skipped'] == ['unexpected layer predictions in the file, shapes '
                                         '[(1536, 1000), (1000,)]']


def test_the_launcher_writes_a_checkpoint_that_loads_as_the_conversion(keras_b3_64, tmp_path):
  paths, _, _ = keras_b3_64
  output = tmp_path / 'converted'
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'launch', 'convert_weights.py'),
       f'--keras_weights={paths[".h5"]}', '--model=efficientnetv2_b3', f'--output={output}'],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'efficientnetv2_b3: 538 arrays' in result.stdout
  loaded, config = load_converted(str(output))
  expected, _ = convert(paths['.h5'], 'b3')
  assert config['model'] == 'efficientnetv2_b3' and config['num_classes'] == 1000
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)


# 76 -> 38 -> 19 -> 10 -> 5 -> 3 and, at paper 2's native size (test-slow), 300 -> 150 ->
# 75 -> 38 -> 19 -> 10: the stride-2 convs meet even and odd sizes.
@pytest.mark.parametrize('size', [76, pytest.param(300, marks=pytest.mark.slow)])
def test_odd_sizes_pad_as_tensorflow_does(size):
  rng = np.random.default_rng(2)
  calibration = random_images(rng, 4, size)
  model = randomised_keras_b3(size, calibration)
  path = os.path.join(os.environ.get('TMPDIR', '/tmp'),
                      f'b3_{size}_{os.getpid()}.weights.h5')
  model.save_weights(path)
  try:
    images = calibration[:2]
    keras_logits, keras_pooled = keras_outputs(model, images)
    logits, pooled = flax_outputs(*convert(path, 'b3'), images)
  finally:
    os.remove(path)
  logits_error = np.abs(logits - keras_logits).max()
  pooled_error = np.abs(pooled - keras_pooled).max()
  print(f'{size}x{size}: max abs error logits {logits_error:.3g}, pooled {pooled_error:.3g}')
  assert logits_error <= TOLERANCE and pooled_error <= TOLERANCE
