"""Keras `keras.applications.EfficientNetV2B0..B3` weights -> skinjax EfficientNetV2 variables.

Reads the three files Keras writes, by content rather than by suffix:
- `.keras` (Keras 3): a zip holding `model.weights.h5`, read as below.
- `.weights.h5` (Keras 3): `layers/<class>_<n>/vars/<i>`; the group's `name` attribute
  gives the layer name. Files from Keras 3 versions that wrote no names are mapped by
  Keras' class counters in network order (conv2d, conv2d_1, ...).
- `.h5` (legacy: Keras 3 `model.save('x.h5')`, TF-Keras 2 `save_weights`, and the
  ImageNet files Keras downloads): `layer_names` and per-layer `weight_names` attributes.
Within a layer Keras' variable order is fixed (kernel, bias; gamma, beta, moving_mean,
moving_variance), and every format keeps it.

Keras layer `block4a_expand_conv` is `block4a/expand_conv` here; BatchNorm's gamma, beta,
moving_mean, moving_variance are Flax's scale, bias (params) and mean, var (batch_stats).
Every array keeps its shape (the depthwise kernel is stored in Keras' [k, k, C, 1]).
Missing, unexpected and mis-shaped tensors are all collected, then reported together in
one error; only unexpected layers can be let through (`skip_unexpected`).
"""

import io
import re
import zipfile

import h5py
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import traverse_util

from skinjax.convert.converted_weights import load_converted, save_converted  # noqa: F401
from skinjax.models import create_model
from skinjax.models.efficientnet_v2 import DEFAULT_SIZES, IMAGENET_MEAN, IMAGENET_VARIANCE

VARIANTS = tuple(DEFAULT_SIZES)  # 'b0' .. 'b3'
# Flax leaf -> Keras variable name, in Keras' order within a layer.
BATCH_NORM_VARIABLES = ((('params', 'scale'), 'gamma'), (('params', 'bias'), 'beta'),
                        (('batch_stats', 'mean'), 'moving_mean'),
                        (('batch_stats', 'var'), 'moving_variance'))
# Convolutions and Dense: Flax leaf -> Keras variable name, in Keras' order.
OTHER_VARIABLES = ((('params', 'kernel'), 'kernel'),
                   (('params', 'depthwise_kernel'), 'depthwise_kernel'),
                   (('params', 'pointwise_kernel'), 'pointwise_kernel'),
                   (('params', 'bias'), 'bias'))
# Layer order inside a block, as Keras creates them (fixes the class counters).
BLOCK_LAYER_ORDER = ('expand_conv', 'expand_bn', 'dwconv2', 'bn', 'se_reduce', 'se_expand',
                     'project_conv', 'project_bn')
_BLOCK = re.compile(r'^block(\d+)([a-z])$')
_NORMALIZATION = re.compile(r'^normalization(_\d+)?$')


class ConversionError(ValueError):
  """A Keras file does not fit the model: lists every problem found."""


def model_name(variant: str) -> str:
  if variant not in VARIANTS:
    raise ValueError(f'--variant must be one of {VARIANTS}, got {variant!r}')
  return f'efficientnetv2_{variant}'


# ----------------------------------------------------------------------------- reading


def _array(dataset) -> np.ndarray:
  value = dataset[()]
  if dataset.attrs.get('dtype') == 'bfloat16':  # Keras 3 stores bfloat16 as uint16
    value = value.view(ml_dtypes.bfloat16)
  return np.asarray(value)


def _text(value) -> str:
  return value.decode('utf8') if isinstance(value, bytes) else str(value)


def _read_legacy(group) -> dict[str, list[tuple[str | None, np.ndarray]]]:
  layers = {}
  for layer in map(_text, group.attrs['layer_names']):
    names = [_text(n) for n in group[layer].attrs.get('weight_names', [])]
    layers[layer] = [(name, _array(group[layer][name])) for name in names]
  return layers


def _read_keras3(root, class_counter_names) -> dict[str, list[tuple[str | None, np.ndarray]]]:
  container = root['layers'] if 'layers' in root else root['_layer_checkpoint_dependencies']
  layers = {}
  for key, group in container.items():
    if 'vars' not in group or not len(group['vars']):
      continue
    variables = group['vars']
    name = variables.attrs.get('name')
    if name is None:  # Keras 3 before layer-name metadata: map class counters to names
      if key not in class_counter_names:
        name = key  # reported as unexpected, under the name the file has
      else:
        name = class_counter_names[key]
    arrays = [_array(variables[str(i)]) for i in range(len(variables))]
    layers[_text(name)] = [(None, a) for a in arrays]
  return layers


def read_keras_weights(path: str, class_counter_names: dict[str, str] | None = None):
  """{Keras layer name: [(variable name or None, array), ...] in Keras' order}.

  class_counter_names: for Keras 3 files without layer names, {'conv2d_3': 'block2a_...'}.
  """
  def read_h5(source, label):
    with h5py.File(source, 'r') as f:
      if 'model_weights' in f:
        return _read_legacy(f['model_weights'])
      if 'layer_names' in f.attrs:
        return _read_legacy(f)
      if 'layers' in f or '_layer_checkpoint_dependencies' in f:
        return _read_keras3(f, class_counter_names or {})
    raise ConversionError(f'{label}: not a Keras weights file (no model_weights, '
                          'layer_names or layers/ inside)')

  path = str(path)
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      if 'model.weights.h5' not in archive.namelist():
        raise ConversionError(f'{path}: a zip without model.weights.h5, so not a .keras file '
                              f'(holds {archive.namelist()})')
      return read_h5(io.BytesIO(archive.read('model.weights.h5')), path)
  if not h5py.is_hdf5(path):
    raise ConversionError(f'{path}: expected a Keras .keras, .weights.h5 or .h5 file')
  return read_h5(path, path)


# ------------------------------------------------------------------------------ mapping


def _sort_key(keras_name: str):
  """Network order of a top-level layer: stem, blocks in order, top, predictions."""
  head, _, tail = keras_name.partition('/')
  match = _BLOCK.match(head)
  if match:
    return (1, int(match[1]), match[2], BLOCK_LAYER_ORDER.index(tail))
  return {'stem_conv': (0, 0), 'stem_bn': (0, 1), 'top_conv': (2, 0), 'top_bn': (2, 1),
          'predictions': (3, 0)}[head]


def expected_layers(abstract_variables, order=lambda module: _sort_key('/'.join(module))
                    ) -> dict[str, list[tuple[tuple, str, tuple]]]:
  """{Keras layer name: [(Flax path, Keras variable name, shape), ...]}, sorted by `order`
  of the module path (default: EfficientNetV2's network order; None: the paths' order).

  abstract_variables: the model's {'params', 'batch_stats'} (shapes suffice).
  """
  # .get: a network without BatchNorm (VGG16) has no batch_stats.
  flat = traverse_util.flatten_dict({k: abstract_variables.get(k, {})
                                     for k in ('params', 'batch_stats')})
  modules = {}
  for path, leaf in flat.items():
    modules.setdefault(path[1:-1], {})[(path[0], path[-1])] = leaf.shape
  layers = {}
  for module in (sorted(modules, key=order) if order else modules):
    leaves = modules[module]
    # Keras' order within a layer, of the variables this module has (InceptionV3's
    # BatchNorms have no gamma; a separable convolution two kernels).
    kinds = BATCH_NORM_VARIABLES if ('batch_stats', 'mean') in leaves else OTHER_VARIABLES
    layers['_'.join(module)] = [((key[0],) + module + (key[1],), keras, leaves[key])
                                for key, keras in kinds if key in leaves]
  return layers


def _keras_class(keras_name: str, variables) -> str:
  if keras_name.endswith('dwconv2'):
    return 'depthwise_conv2d'
  if keras_name == 'predictions':
    return 'dense'
  return 'batch_normalization' if len(variables) == 4 else 'conv2d'


def class_counter_names(expected) -> dict[str, str]:
  """Keras 3's unnamed weight groups ('conv2d_7') -> layer names, by creation order."""
  counts, names = {}, {}
  for keras_name, variables in expected.items():
    cls = _keras_class(keras_name, variables)
    n = counts.get(cls, 0)
    counts[cls] = n + 1
    names[cls if n == 0 else f'{cls}_{n}'] = keras_name
  return names


def _check_preprocessing(name, weights) -> str | None:
  """TF-Keras 2 stored the Normalization constants; they must be the ImageNet ones."""
  if not weights:
    return None
  mean, variance = (np.asarray(w, np.float64).ravel() for _, w in weights[:2])
  if not (np.allclose(mean, IMAGENET_MEAN, atol=1e-6)
          and np.allclose(variance, IMAGENET_VARIANCE, atol=1e-6)):
    return (f'{name}: preprocessing mean {mean.tolist()} / variance {variance.tolist()} are '
            f'not the ImageNet constants {IMAGENET_MEAN} / {IMAGENET_VARIANCE} the model uses')
  return None


def map_keras_weights(found, expected, *, skip_unexpected=False, source='keras file'):
  """Places Keras arrays at their Flax paths. Returns (variables, report).

  Raises ConversionError listing every missing layer or variable (expected shape), every
  unexpected one (file shape; allowed with `skip_unexpected`), every shape mismatch (both
  shapes) and every variable whose stored name is not the expected one.
  """
  problems, skipped, flat = [], [], {}
  for name, weights in found.items():
    if _NORMALIZATION.match(name):
      problem = _check_preprocessing(name, weights)
      problems += [problem] if problem else []
      continue
    if name not in expected and weights:
      shapes = [tuple(w.shape) for _, w in weights]
      (skipped if skip_unexpected else problems).append(f'unexpected layer {name} in the '
                                                        f'file, shapes {shapes}')
  for name, variables in expected.items():
    if name not in found:
      problems.append(f'missing layer {name}: expected shapes '
                      f'{[shape for _, _, shape in variables]}')
      continue
    weights = found[name]
    for i, (path, keras_var, shape) in enumerate(variables):
      if i >= len(weights):
        problems.append(f'missing variable {name}/{keras_var}: expected shape {shape}')
        continue
      stored_name, array = weights[i]
      if stored_name is not None:
        stored = stored_name.split('/')[-1].split(':')[0]
        allowed = {keras_var, 'depthwise_kernel'} if keras_var == 'kernel' else {keras_var}
        if stored not in allowed:
          problems.append(f'{name}: variable {i} is {stored_name!r}, expected {keras_var}')
          continue
      if tuple(array.shape) != tuple(shape):
        problems.append(f'shape mismatch at {name}/{keras_var}: file {tuple(array.shape)}, '
                        f'model {tuple(shape)}')
        continue
      flat[path] = np.asarray(array, np.float32)
    for stored_name, array in weights[len(variables):]:
      problems.append(f'unexpected variable {stored_name or "#" + str(len(variables))} in '
                      f'layer {name}, shape {tuple(array.shape)}')
  if problems:
    raise ConversionError(f'{source} does not fit the model ({len(problems)} problems):\n  '
                          + '\n  '.join(problems))
  report = {'converted_layers': len(expected), 'converted_arrays': len(flat),
            'skipped': skipped}
  return traverse_util.unflatten_dict(flat), report


def abstract_variables(model, image_size: int = 32):
  """The model's variable shapes and dtypes, allocating nothing."""
  return jax.eval_shape(lambda: model.init(jax.random.key(0),
                                           jnp.zeros((1, image_size, image_size, 3)),
                                           train=False))


def convert(path: str, variant: str, include_top: bool = True, *,
            skip_unexpected: bool = False) -> tuple[dict, dict]:
  """Reads a Keras EfficientNetV2 `variant` file. Returns (variables, config).

  variables: {'params', 'batch_stats'} of numpy float32 arrays for
    `create_model(config['model'], num_classes=config['num_classes'])`.
  config: model name, num_classes (the file's top width, or None without a top), the
    variant's default image size, the source file, and the conversion report.
  """
  name = model_name(variant)
  # Keras' class counters (for files without layer names) do not depend on the top's width.
  counters = class_counter_names(expected_layers(abstract_variables(
      create_model(name, num_classes=1 if include_top else None))))
  found = read_keras_weights(path, counters)
  num_classes = None
  if include_top:
    # The top's width is the file's: Keras allows classes != 1000 without ImageNet weights.
    top = found.get('predictions')
    num_classes = int(top[-1][1].shape[0]) if top else 1000
  expected = expected_layers(abstract_variables(create_model(name, num_classes=num_classes)))
  variables, report = map_keras_weights(found, expected, skip_unexpected=skip_unexpected,
                                        source=str(path))
  config = {'model': name, 'num_classes': num_classes, 'include_preprocessing': True,
            'image_size': DEFAULT_SIZES[variant], 'source': str(path), 'report': report}
  return variables, config
