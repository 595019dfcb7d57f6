"""Keras InceptionV3 files convert into the same network: parameter counts, logits, pooled
features and the last conv map (Grad-CAM's, Keras' `mixed10`), and Keras' preprocess_input.

A seeded Keras model (weights=None, TensorFlow backend, CPU) gets non-trivial BatchNorm
parameters (beta at random; InceptionV3's BatchNorms have no gamma; the moving statistics of
random images: one training-mode pass at momentum 0) and a random top bias, so that every
tensor matters. Both networks compute in float64 here, with float32 weights (what the
converter keeps): in float32 the rounding of 94 BatchNorms, whose statistics on noise
images are nearly the same from image to image, grows to ~1e-3 at 75x75 however exact the
network is; in float64 the two agree to ~1e-7 (the float32 logits).

Keras auto-names InceptionV3's convolutions and BatchNorms from per-session counters, so
the files are written by models built after other layers (shifted numbers, as TF-Keras 2's
conv2d_1 .. conv2d_94), which the converter renumbers.
"""

import functools
import os

os.environ['KERAS_BACKEND'] = 'tensorflow'  # before keras is imported anywhere

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax.convert.keras_applications import ConversionError, convert
from skinjax.models import create_model, input_size_problem

keras = pytest.importorskip('keras')

TOLERANCE = 1e-4
NAME = 'inceptionv3'


def parameter_count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def preprocess(pixels):
  return np.asarray(keras.applications.inception_v3.preprocess_input(pixels.copy()))


def our_shapes(name, size, **kwargs):
  model = create_model(name, **kwargs)
  return jax.eval_shape(lambda: model.init(jax.random.key(0),
                                           np.zeros((1, size, size, 3), np.float32)))


def randomised_keras(size, calibration_images, shift, seed=0):
  """InceptionV3 built after `shift` unnamed Conv2D + BatchNormalization pairs in a fresh
  Keras session: its auto names start at conv2d_{shift}."""
  keras.backend.clear_session()
  for _ in range(shift):
    keras.layers.Conv2D(1, 1), keras.layers.BatchNormalization()
  keras.utils.set_random_seed(seed)
  policy = keras.config.dtype_policy()
  keras.config.set_dtype_policy('float64')
  try:
    model = keras.applications.InceptionV3(weights=None, input_shape=(size, size, 3),
                                           classifier_activation=None)
  finally:
    keras.config.set_dtype_policy(policy)
  rng = np.random.default_rng(seed)
  norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  for layer in norms:
    beta, mean, variance = layer.get_weights()  # scale=False: no gamma
    layer.set_weights([rng.normal(0, 0.2, beta.shape).astype(np.float32), mean, variance])
    layer.momentum = 0.0
  top = model.get_layer('predictions')
  kernel, bias = top.get_weights()
  top.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
  model(calibration_images, training=True)  # moving statistics <- these images' moments
  for layer in norms:
    layer.momentum = 0.99
  # float32 values, so that the converter's float32 arrays are these weights exactly.
  model.set_weights([w.astype(np.float32).astype(np.float64) for w in model.get_weights()])
  return model


def keras_outputs(model, images):
  outputs = [model.output, model.get_layer('avg_pool').output,
             model.get_layer('mixed10').output]
  return [np.asarray(o) for o in keras.Model(model.input, outputs)(images, training=False)]


@functools.cache
def jitted_forward(num_classes):
  model = create_model(NAME, num_classes=num_classes, dtype=jnp.float64,
                       param_dtype=jnp.float64)
  return jax.jit(lambda v, x: model.apply(v, x, return_features=True))


def flax_outputs(variables, config, images):
  with jax.enable_x64(True):
    variables = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
    logits, features = jitted_forward(config['num_classes'])(variables, images)
    return [np.asarray(logits), np.asarray(features.pooled), np.asarray(features.last_conv)]


# Sizes -> how many conv2d_bn pairs come before the model (0: a fresh session's names).
SHIFTS = {75: 1, 79: 0, 299: 3}


@functools.cache
def keras_files(size, directory):
  """A randomised Keras model at size x size saved as .weights.h5 (at 75 also as legacy .h5);
  its outputs, its first convolution's name and its parameter counts."""
  suffixes = ('.weights.h5', '.h5') if size == 75 else ('.weights.h5',)
  rng = np.random.default_rng(1)
  # float32 values: Keras' Input casts to float32 whatever the policy.
  calibration = preprocess(rng.uniform(0, 255, (8, size, size, 3)).astype(np.float32))
  calibration = calibration.astype(np.float64)
  model = randomised_keras(size, calibration, SHIFTS[size])
  paths = {suffix: os.path.join(directory, f'{NAME}_{size}{suffix}') for suffix in suffixes}
  model.save_weights(paths['.weights.h5'])
  for suffix in suffixes[1:]:
    model.save(paths[suffix])
  images = calibration[:2]
  first = next(l.name for l in model.layers if isinstance(l, keras.layers.Conv2D))
  top = model.get_layer('predictions').count_params()
  # Keras counts BatchNorm's moving statistics as (non-trainable) parameters too.
  counts = {'all': model.count_params(), 'trainable': sum(
      int(np.prod(w.shape)) for w in model.trainable_weights), 'top': top}
  return paths, images, keras_outputs(model, images), first, counts


@pytest.fixture(scope='module')
def directory(tmp_path_factory):
  return str(tmp_path_factory.mktemp('keras_inception_v3'))


def assert_close(size, ours, theirs):
  errors = [float(np.abs(a - b).max()) for a, b in zip(ours, theirs)]
  print(f'{NAME} {size}x{size}: max abs error logits {errors[0]:.3g}, pooled {errors[1]:.3g}, '
        f'last conv map {errors[2]:.3g} (largest |logit| {np.abs(theirs[0]).max():.3g}, '
        f'|map| {np.abs(theirs[2]).max():.3g})')
  assert max(errors) <= TOLERANCE, errors


@functools.cache
def converted(path):
  return convert(path, NAME)


@pytest.mark.parametrize('include_top', [True, False])
def test_parameter_counts_equal_keras(directory, include_top):
  # The counts do not depend on the input size; Keras' headless model lacks `predictions`.
  counts = keras_files(75, directory)[-1]
  top = 0 if include_top else counts['top']
  shapes = our_shapes(NAME, 299, num_classes=1000 if include_top else None)
  assert parameter_count(shapes) == counts['all'] - top == (23_851_784 if include_top
                                                             else 21_802_784)
  assert parameter_count(shapes['params']) == counts['trainable'] - top


# 75: Keras' smallest (maps 37, 35, 17, 15, 7, 3, 1); 79: even maps where 75's are odd
# (39, 37, 18, 16, 7, 3, 1), written with a fresh session's names.
@pytest.mark.parametrize('size', [75, pytest.param(79, marks=pytest.mark.slow),
                                  pytest.param(299, marks=pytest.mark.slow)])
def test_a_converted_keras_file_gives_keras_outputs(directory, size):
  paths, images, expected, first, _ = keras_files(size, directory)
  assert first == ('conv2d' if SHIFTS[size] == 0 else f'conv2d_{SHIFTS[size]}')
  variables, config = converted(paths['.weights.h5'])
  assert config['num_classes'] == 1000 and config['image_size'] == 299
  assert_close(size, flax_outputs(variables, config, images), expected)


def shifted_files(directory):
  return keras_files(75, directory)[0]


def test_a_legacy_h5_file_converts_to_the_same_variables(directory):
  paths = shifted_files(directory)
  with h5py.File(paths['.h5'], 'r') as f:  # legacy layout, names as TF-Keras 2's files
    assert 'conv2d_94' in f['model_weights'].attrs['layer_names'].astype(str)
  reference, _ = converted(paths['.weights.h5'])
  variables, _ = convert(paths['.h5'], NAME)
  assert jax.tree.structure(variables) == jax.tree.structure(reference)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(a, b)


def copy_of(path, target):
  target.write_bytes(open(path, 'rb').read())
  return str(target)


def test_a_keras3_file_without_layer_names_is_refused_in_one_line(directory, tmp_path):
  # Its groups follow Keras' graph order, not the creation order the numbers give.
  unnamed = copy_of(shifted_files(directory)['.weights.h5'], tmp_path / 'unnamed.weights.h5')
  with h5py.File(unnamed, 'r+') as f:
    for group in f['layers'].values():
      if 'vars' in group:
        group['vars'].attrs.pop('name', None)
  with pytest.raises(ConversionError, match=r'unnamed.weights.h5: its \d+ weight groups carry '
                                            r'no layer names .*save it again'):
    convert(unnamed, NAME)


def test_a_file_with_another_count_of_auto_named_layers_is_refused_in_one_line(directory,
                                                                              tmp_path):
  short = copy_of(shifted_files(directory)['.weights.h5'], tmp_path / 'short.weights.h5')
  with h5py.File(short, 'r+') as f:
    del f['layers'][next(key for key, group in f['layers'].items()
                         if 'vars' in group and group['vars'].attrs.get('name') == 'conv2d_5')]
  with pytest.raises(ConversionError) as error:
    convert(short, NAME)
  assert str(error.value) == (
      f'{short}: 93 auto-named conv2d layers (conv2d_1 .. conv2d_94), the model has 94 '
      '(conv2d .. conv2d_93): not a file of this network')


def test_a_headless_conversion_refuses_the_top_unless_told_to_skip_it(directory):
  path = shifted_files(directory)['.weights.h5']
  with pytest.raises(ConversionError, match=r'unexpected layer predictions in the file, '
                                            r'shapes \[\(2048, 1000\), \(1000,\)\]'):
    convert(path, NAME, include_top=False)
  variables, config = convert(path, NAME, include_top=False, skip_unexpected=True)
  assert config['num_classes'] is None and 'predictions' not in variables['params']
  assert len(variables['params']) == 2 * 94  # every conv2d_bn, renumbered


def test_the_preprocessing_option_is_keras_preprocess_input():
  pixels = np.random.default_rng(3).uniform(0, 255, (2, 75, 75, 3)).astype(np.float32)
  # The stem alone (no mixed blocks): the preprocessing comes before it.
  plain = create_model('inceptionv3_tiny', num_classes=None, blocks=())
  inside = create_model('inceptionv3_tiny', num_classes=None, blocks=(),
                        include_preprocessing=True)
  variables = jax.jit(plain.init)(jax.random.key(0), pixels)
  np.testing.assert_allclose(jax.jit(inside.apply)(variables, pixels),
                             jax.jit(plain.apply)(variables, preprocess(pixels)), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize('size, sides', [(75, [35, 15, 7, 3, 1]), (299, [147, 71, 35, 17, 8])])
def test_features_give_the_stride_pyramid(size, sides):
  model = create_model(NAME, num_classes=None)
  _, features = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), np.zeros((1, size, size, 3), np.float32), return_features=True)[0])
  assert [level.shape[1] for level in features.pyramid] == sides
  assert features.last_conv.shape == (1, sides[-1], sides[-1], 2048)
  assert features.pooled.shape == (1, 2048)


def test_inputs_below_keras_smallest_are_named():
  assert input_size_problem(create_model(NAME), 74) == (
      'at least 75 (as keras.applications builds InceptionV3)')
  assert input_size_problem(create_model('inceptionv3_tiny_skin'), 74) is not None
  assert input_size_problem(create_model('inceptionv3_skin'), 75) is None
