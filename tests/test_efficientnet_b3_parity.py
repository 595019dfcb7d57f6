"""Keras EfficientNetB3 files convert into the same network: parameter counts, logits, pooled
features and the last conv map (Grad-CAM's), the Normalization statistics the file holds,
Keras' ImageNet-only Rescaling, and drop connect's rates.

A seeded Keras model (weights=None, TensorFlow backend, CPU) gets non-trivial BatchNorm
parameters (gamma and beta at random, the moving statistics of random images: one
training-mode pass at momentum 0 with the dropouts off), random biases (squeeze-excite,
`predictions`) and random Normalization statistics, so that every tensor matters; the
residual branches end small (their `_project_bn` gammas), as in trained networks. The tiny
variant is Keras' own builder at the same coefficients (efficientnet.EfficientNet(0.25,
0.5, ...)). Our side runs the depthwise convolutions as grouped convolutions ('conv', which
XLA:CPU compiles twice as fast; tests/test_depthwise.py checks the implementations agree)
except at the native size, which runs the default.
"""

import contextlib
import functools
import os

os.environ['KERAS_BACKEND'] = 'tensorflow'  # before keras is imported anywhere

import flax
import flax.linen as nn
import jax
import numpy as np
import pytest

from skinjax.convert import keras_applications
from skinjax.convert.keras_applications import ConversionError, convert
from skinjax.models import create_model, input_size_problem
from skinjax.models.depthwise import use_implementation
from skinjax.models.dropout import ExampleDropout

keras = pytest.importorskip('keras')
from keras.src.applications import efficientnet  # noqa: E402

TOLERANCE = 1e-4


def keras_b3(**kw):
  return keras.applications.EfficientNetB3(**kw)


def keras_tiny(size, weights=None, **kw):
  return efficientnet.EfficientNet(0.25, 0.3, size, 0.3, weights=weights, weights_name='b3',
                                   name='efficientnet_tiny', **kw)


def parameter_count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.fixture
def tiny_family(monkeypatch):
  """The converter takes the tiny variant as a family of its own, for these tests."""
  monkeypatch.setitem(keras_applications.FAMILIES, 'efficientnet_tiny',
                      ('keras.src.applications.efficientnet.EfficientNet(0.25, 0.3)', 64))


# B3's count with its top is checked in make test on the parity model (75 x 75) as well.
@pytest.mark.parametrize('include_top', [True, False])
@pytest.mark.parametrize('name,size', [pytest.param('efficientnet_b3', 300, marks=pytest.mark.slow),
                                       ('efficientnet_tiny', 32)])
def test_parameter_counts_equal_keras(name, size, include_top):
  build = keras_b3 if name == 'efficientnet_b3' else functools.partial(keras_tiny, size)
  keras_model = build(weights=None, include_top=include_top, input_shape=(size, size, 3))
  model = create_model(name, num_classes=1000 if include_top else None)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, size, size, 3),
                                                                          np.float32)))
  # Keras counts BatchNorm's moving statistics and Normalization's mean, variance and count.
  assert parameter_count(shapes) == keras_model.count_params()
  assert parameter_count(shapes['params']) == sum(
      int(np.prod(w.shape)) for w in keras_model.trainable_weights)


def randomised_keras(build, calibration_images, seed=0):
  keras.utils.set_random_seed(seed)
  model = build(classifier_activation=None)
  rng = np.random.default_rng(seed)
  normalization = next(l for l in model.layers if isinstance(l, keras.layers.Normalization))
  _, _, count = normalization.get_weights()
  normalization.set_weights([rng.uniform(0.3, 0.6, 3).astype(np.float32),
                             rng.uniform(0.04, 0.09, 3).astype(np.float32), count])
  normalization.finalize_state()  # Keras reads its statistics into constants here
  norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  residual = {l.name[:-len('add')] for l in model.layers if l.name.endswith('_add')}
  for layer in norms:
    gamma, beta, mean, variance = layer.get_weights()
    ends_branch = (layer.name.endswith('_project_bn')
                   and layer.name[:-len('project_bn')] in residual)
    low, high = (0.1, 0.3) if ends_branch else (0.5, 1.5)
    layer.set_weights([rng.uniform(low, high, gamma.shape).astype(np.float32),
                       rng.normal(0, 0.2, beta.shape).astype(np.float32), mean, variance])
    layer.momentum = 0.0
  for layer in model.layers:
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.use_bias:
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
  dropouts = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
  rates = [l.rate for l in dropouts]
  for layer in dropouts:
    layer.rate = 0.0
  model(calibration_images, training=True)  # moving statistics <- these images' moments
  for layer, rate in zip(dropouts, rates):
    layer.rate = rate
  for layer in norms:
    layer.momentum = 0.99
  return model


def keras_outputs(model, images):
  outputs = [model.output, model.get_layer('avg_pool').output,
             model.get_layer('top_activation').output]
  return [np.asarray(o) for o in keras.Model(model.input, outputs)(images, training=False)]


@functools.cache
def jitted_forward(name, num_classes, imagenet_rescaling, implementation):
  model = create_model(name, num_classes=num_classes, imagenet_rescaling=imagenet_rescaling)

  def forward(variables, images):
    with (use_implementation(implementation) if implementation else contextlib.nullcontext()):
      return model.apply(variables, images, return_features=True)

  return jax.jit(forward)


def flax_outputs(variables, config, images, *, implementation='conv', imagenet_rescaling=False):
  logits, features = jitted_forward(config['model'], config['num_classes'], imagenet_rescaling,
                                    implementation)(variables, images)
  return [np.asarray(logits), np.asarray(features.pooled), np.asarray(features.last_conv)]


def calibration_images(size, count=8):
  """Pixels in [0, 255]: Keras' EfficientNet rescales and normalises inside."""
  return np.random.default_rng(1).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


@functools.cache
def keras_files(name, size, directory, weights=None, formats=('.weights.h5',)):
  """A randomised Keras model at size x size saved in `formats`: (paths, two images, its
  outputs for them, the model)."""
  calibration = calibration_images(size)
  build = keras_b3 if name == 'efficientnet_b3' else functools.partial(keras_tiny, size)
  model = randomised_keras(functools.partial(build, weights=weights,
                                             input_shape=(size, size, 3)), calibration)
  tag = f'{name}_{size}' + (f'_{weights}' if weights else '')
  paths = {suffix: os.path.join(directory, tag + suffix) for suffix in formats}
  for suffix, path in paths.items():
    (model.save_weights if suffix == '.weights.h5' else model.save)(path)
  images = calibration[:2]
  return paths, images, keras_outputs(model, images), model


@functools.cache
def converted(path, name):
  return convert(path, name)


@pytest.fixture(scope='module')
def directory(tmp_path_factory):
  return str(tmp_path_factory.mktemp('keras_efficientnets'))


def assert_close(name, size, ours, theirs):
  errors = [float(np.abs(a - b).max()) for a, b in zip(ours, theirs)]
  print(f'{name} {size}x{size}: max abs error logits {errors[0]:.3g}, pooled {errors[1]:.3g}, '
        f'last conv map {errors[2]:.3g} (largest |logit| {np.abs(theirs[0]).max():.3g}, '
        f'|map| {np.abs(theirs[2]).max():.3g})')
  assert max(errors) <= TOLERANCE, errors


# 75: odd and even maps (75, 38, 19, 10, 5, 3) meet correct_pad's two cases; 64: all even.
@pytest.mark.parametrize('size', [75, pytest.param(64, marks=pytest.mark.slow),
                                  pytest.param(300, marks=pytest.mark.slow)])
def test_a_converted_keras_b3_file_gives_keras_outputs(directory, size):
  paths, images, expected, keras_model = keras_files('efficientnet_b3', size, directory)
  variables, config = converted(paths['.weights.h5'], 'efficientnet_b3')
  assert config['num_classes'] == 1000 and config['image_size'] == 300
  # Every Keras variable has its place: moving statistics and Normalization's included.
  assert parameter_count(variables) == keras_model.count_params()
  ours = flax_outputs(variables, config, images, implementation=None if size == 300 else 'conv')
  assert_close('efficientnet_b3', size, ours, expected)


def test_the_file_normalization_statistics_are_placed(directory):
  paths, _, _, keras_model = keras_files('efficientnet_b3', 75, directory)
  variables, _ = converted(paths['.weights.h5'], 'efficientnet_b3')
  layer = next(l for l in keras_model.layers if isinstance(l, keras.layers.Normalization))
  mean, variance, count = layer.get_weights()
  stats = variables['batch_stats']['normalization']
  assert not np.allclose(mean, 0) and not np.allclose(variance, 1)  # randomised, not identity
  np.testing.assert_array_equal(stats['mean'], mean)
  np.testing.assert_array_equal(stats['variance'], variance)
  assert stats['count'].dtype == np.int32 and int(stats['count']) == int(count)


def test_a_file_without_the_normalization_layer_is_refused():
  expected = keras_applications.expected_layers(create_model('efficientnet_tiny'))
  with pytest.raises(ConversionError, match=r'^x.h5: expected one Normalization layer '
                                            r'\(normalization\), found none$'):
    keras_applications.take_normalization({}, expected, 'x.h5')


# 33: maps 33, 17, 9, 5, 3, 2, odd and even.
@pytest.mark.slow
def test_the_tiny_variant_is_keras_builder_at_its_coefficients(directory, tiny_family):
  paths, images, expected, _ = keras_files('efficientnet_tiny', 33, directory)
  variables, config = convert(paths['.weights.h5'], 'efficientnet_tiny')
  assert_close('efficientnet_tiny', 33, flax_outputs(variables, config, images), expected)


@pytest.mark.slow
@pytest.mark.parametrize('suffix', ['.keras', '.h5'])
def test_each_keras_format_converts_to_the_same_variables(directory, tiny_family, suffix):
  paths, *_ = keras_files('efficientnet_tiny', 32, directory,
                          formats=('.weights.h5', '.keras', '.h5'))
  reference, _ = convert(paths['.weights.h5'], 'efficientnet_tiny')
  variables, _ = convert(paths[suffix], 'efficientnet_tiny')
  assert jax.tree.structure(variables) == jax.tree.structure(reference)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_imagenet_rescaling_is_the_layer_keras_adds_for_imagenet_weights(directory,
                                                                         tiny_family,
                                                                         monkeypatch):
  # Keras builds weights='imagenet' with one more Rescaling, then loads the file it would
  # download: a randomised file of the same network stands in for it, and the model is
  # randomised again (calibrated with that layer) and saved.
  plain, *_ = keras_files('efficientnet_tiny', 33, directory)
  monkeypatch.setattr(efficientnet.file_utils, 'get_file',
                      lambda *args, **kw: plain['.weights.h5'])
  paths, images, expected, keras_model = keras_files('efficientnet_tiny', 33, directory,
                                                     'imagenet')
  assert sum(isinstance(l, keras.layers.Rescaling) for l in keras_model.layers) == 2
  variables, config = convert(paths['.weights.h5'], 'efficientnet_tiny')
  ours = flax_outputs(variables, config, images, imagenet_rescaling=True)
  assert_close('efficientnet_tiny imagenet_rescaling', 33, ours, expected)
  without = flax_outputs(variables, config, images)
  assert np.abs(without[0] - expected[0]).max() > 100 * TOLERANCE  # the layer matters


def random_variables(model, size, seed=0):
  """Variables of `model` drawn without compiling its initialisers: N(0, 0.3) (BatchNorm
  variances U(0.5, 1.5)), so that every branch carries signal."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             np.zeros((1, size, size, 3), np.float32)))
  rng = np.random.default_rng(seed)
  flat = flax.traverse_util.flatten_dict(shapes)
  drawn = {path: (np.zeros(leaf.shape, leaf.dtype) if path[-1] == 'count'
                  else rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
                  if path[-1] in ('var', 'variance')
                  else rng.normal(0, 0.3, leaf.shape).astype(np.float32))
           for path, leaf in flat.items()}
  return flax.traverse_util.unflatten_dict(drawn)


def test_drop_connect_drops_whole_examples_branches_at_keras_rates():
  keras_model = keras_tiny(32, input_shape=(32, 32, 3))
  model = create_model('efficientnet_tiny')
  theirs = {l.name: l for l in keras_model.layers if isinstance(l, keras.layers.Dropout)}
  ours = {b.name + '_drop': b.drop_rate for b in model.blocks if b.has_residual and b.drop_rate}
  assert sorted(ours) == sorted(n for n in theirs if n != 'top_dropout')
  for name, rate in ours.items():
    assert rate == pytest.approx(theirs[name].rate, abs=1e-12)
    assert tuple(theirs[name].noise_shape) == (None, 1, 1, 1)  # whole examples
  assert model.dropout_rate == theirs['top_dropout'].rate

  # In training, each example's branch is zero or scaled by 1 / (1 - rate), as a whole.
  def branch_and_output(variables, images):
    seen = {}

    def record(next_fun, args, kwargs, context):
      output = next_fun(*args, **kwargs)
      if isinstance(context.module, ExampleDropout) and context.method_name == '__call__':
        seen[context.module.name] = (args[0], output)
      return output

    with nn.intercept_methods(record), use_implementation('conv'):
      model.apply(variables, images, train=True, mutable=['batch_stats'],
                  rngs={'dropout': jax.random.key(1)})
    return seen['block6b_drop']

  batch = 256
  images = np.random.default_rng(0).uniform(0, 255, (batch, 32, 32, 3)).astype(np.float32)
  branch, dropped = (np.asarray(a) for a in jax.jit(branch_and_output)(
      random_variables(model, 32), images))
  rate = ours['block6b_drop']
  assert np.all(np.abs(branch).max(axis=(1, 2, 3)) > 0)
  kept = np.all(np.isclose(dropped, branch / (1 - rate), rtol=1e-6, atol=1e-6), axis=(1, 2, 3))
  zero = np.all(dropped == 0, axis=(1, 2, 3))
  assert np.all(kept ^ zero)
  # 256 examples at rate 0.16: 41 expected, 4.5 sigma either side.
  assert abs(zero.sum() - batch * rate) < 4.5 * np.sqrt(batch * rate * (1 - rate))


def test_the_preprocessing_option_is_keras_preprocess_input():
  # Keras' preprocess_input is a pass-through (the model rescales and normalises itself),
  # so the option builds the very same computation.
  pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(efficientnet.preprocess_input(pixels.copy())),
                                pixels)
  plain = create_model('efficientnet_tiny', num_classes=None)
  inside = create_model('efficientnet_tiny', num_classes=None, include_preprocessing=True)
  variables = random_variables(plain, 32)
  assert str(jax.make_jaxpr(inside.apply)(variables, pixels)) == str(
      jax.make_jaxpr(plain.apply)(variables, pixels))


def test_features_give_the_stride_pyramid():
  model = create_model('efficientnet_tiny', num_classes=None)
  _, features = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32), return_features=True)[0])
  assert [level.shape[1] for level in features.pyramid] == [32, 16, 8, 4, 2]
  # B3's levels: after block1b, 2c, 3c, 5e and top_activation.
  b3 = create_model('efficientnet_b3', num_classes=None)
  names = [b.name for b in b3.blocks]
  before_strides = [names[i - 1] for i, b in enumerate(b3.blocks) if b.strides > 1]
  assert before_strides == ['block1b', 'block2c', 'block3c', 'block5e']
  assert features.last_conv.shape == (1, 2, 2, 320) and features.pooled.shape == (1, 320)


def test_inputs_below_keras_smallest_are_named():
  assert input_size_problem(create_model('efficientnet_b3'), 31) == (
      'at least 32 (as keras.applications builds EfficientNet)')
  assert input_size_problem(create_model('efficientnet_tiny_skin'), 31) is not None
  assert input_size_problem(create_model('efficientnet_b3_skin'), 32) is None
