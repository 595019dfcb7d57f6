"""Keras `keras.applications` weights -> skinjax variables, for the families whose Flax
modules carry Keras' layer names (skinjax.models.resnet: ResNet50, ResNet50V2;
skinjax.models.mobilenet: MobileNet; skinjax.models.mobilenet_v2: MobileNetV2;
skinjax.models.vgg: VGG16; skinjax.models.xception: Xception).

The files are read as for EfficientNetV2 (skinjax.convert.keras_efficientnet_v2: `.keras`,
`.weights.h5`, legacy `.h5`), and every missing, unexpected or mis-shaped tensor is listed
in one error. Here a Flax module `conv2_block1_1_conv` is the Keras layer of that name, so
no name table is kept. Files whose weight groups carry no layer names (early Keras 3) are
refused: their order is Keras' graph order, not recoverable from the Flax model.

InceptionV3 (skinjax.models.inception_v3) keeps Keras' auto names (`conv2d_7`), which a
file numbers from wherever its Keras session's counters stood: they are renumbered by rank
(creation order) to a fresh session's names first (renumber_auto_names). So are Xception's
four unnamed shortcut convolutions and BatchNorms.

VGG16's fc1 takes the flattened block5_pool map, so its rows fix the input size a file was
built at (224 -> 7 * 7 * 512); the expected shapes and config['image_size'] follow the file.

EfficientNetB3 (skinjax.models.efficientnet) holds Keras' Normalization layer's statistics
in batch_stats: they are taken from the file as it has them (take_normalization).
"""

import io
import re
import zipfile

import h5py
import numpy as np

from skinjax.convert import keras_efficientnet_v2
from skinjax.convert.keras_efficientnet_v2 import (ConversionError, abstract_variables,
                                                    map_keras_weights, read_keras_weights)
from skinjax.models import create_model
from skinjax.models.vgg import input_size_of_fc1

# Registry name -> Keras' model, and its default input size.
FAMILIES = {
    'resnet50': ('keras.applications.ResNet50', 224),
    'resnet50v2': ('keras.applications.ResNet50V2', 224),
    'mobilenet': ('keras.applications.MobileNet', 224),
    'mobilenetv2': ('keras.applications.MobileNetV2', 224),
    'inceptionv3': ('keras.applications.InceptionV3', 299),
    'vgg16': ('keras.applications.VGG16', 224),
    'xception': ('keras.applications.Xception', 299),
    'efficientnet_b3': ('keras.applications.EfficientNetB3', 300),
}

__all__ = ['FAMILIES', 'ConversionError', 'convert', 'expected_layers',
           'renumber_auto_names', 'take_normalization']


def expected_layers(model) -> dict[str, list[tuple[tuple, str, tuple]]]:
  """{Keras layer name: [(Flax path, Keras variable name, shape), ...]}: a module's path is
  its Keras name, so no order or name table is needed."""
  return keras_efficientnet_v2.expected_layers(abstract_variables(model), order=None)


# How Keras 3 keys a weight group in a file that does not name its layers.
_UNNAMED_GROUP = re.compile(
    r'^(conv2d|batch_normalization|dense|depthwise_conv2d|separable_conv2d)(_\d+)?$')


# Families whose layers Keras leaves unnamed, so that a file carries its session's counters:
# the Keras classes so named.
AUTO_NAMED_FAMILIES = {'inceptionv3': ('conv2d', 'batch_normalization'),
                       'xception': ('conv2d', 'batch_normalization')}


def _groups_without_names(path: str) -> list[str]:
  """The weight groups of a Keras 3 file that carry no layer name (early Keras 3 wrote none;
  legacy .h5 files always name their layers)."""
  def scan(source):
    with h5py.File(source, 'r') as f:
      container = f.get('layers', f.get('_layer_checkpoint_dependencies'))
      if container is None:
        return []
      return [key for key, group in container.items()
              if 'vars' in group and len(group['vars']) and 'name' not in group['vars'].attrs]

  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      return scan(io.BytesIO(archive.read('model.weights.h5')))
  return scan(path)


def renumber_auto_names(found: dict, expected: dict, classes: tuple[str, ...],
                        source: str) -> dict:
  """`found` with its auto-named layers of each Keras class ('conv2d', 'conv2d_95', ...)
  renamed by rank of their number to the model's (`conv2d`, `conv2d_1`, ...): Keras numbers
  them from a per-session counter in creation order, so a second model in one session, or a
  TF-Keras 2 file (`conv2d_1` ..), carries shifted numbers. Raises ConversionError, in one
  line naming `source`, when the file has a different number of such layers."""
  renamed = {}
  for cls in classes:
    pattern = re.compile(rf'^{cls}(?:_(\d+))?$')

    def number(name):
      return int(pattern.match(name)[1] or 0)

    ours = sorted((name for name in expected if pattern.match(name)), key=number)
    theirs = sorted((name for name, weights in found.items()
                     if weights and pattern.match(name)), key=number)
    if theirs and len(theirs) != len(ours):
      raise ConversionError(
          f'{source}: {len(theirs)} auto-named {cls} layers ({theirs[0]} .. {theirs[-1]}), '
          f'the model has {len(ours)} ({ours[0]} .. {ours[-1]}): not a file of this network')
    renamed.update(zip(theirs, ours))
  return {renamed.get(name, name): weights for name, weights in found.items()}


# Keras' Normalization layer (EfficientNet's input statistics), `normalization_N` when its
# session had built one before.
_NORMALIZATION_GROUP = re.compile(r'^normalization(_\d+)?$')
_NORMALIZATION_VARIABLES = ('mean', 'variance', 'count')  # Keras' order


def take_normalization(found: dict, expected: dict, source: str) -> tuple[dict, dict, dict]:
  """(found, expected) without the Normalization layer, and its variables for the model's
  `normalization` batch_stats (mean, variance float32[C], count int32[]), as the file has
  them: weights=None writes 0 and 1, Keras' ImageNet files their statistics (the model's
  `imagenet_rescaling` adds the layer Keras adds after them). ({} for models without one.)
  Raises ConversionError naming `source` when the file has none, several, or misfits."""
  if 'normalization' not in expected:
    return found, expected, {}
  channels = expected['normalization'][0][2]  # the mean's shape
  groups = [name for name, weights in found.items()
            if weights and _NORMALIZATION_GROUP.match(name)]
  if len(groups) != 1:
    raise ConversionError(f'{source}: expected one Normalization layer (normalization), '
                          f'found {groups or "none"}')
  weights = found[groups[0]]
  problems = []
  stored = [(name or '').split('/')[-1].split(':')[0] for name, _ in weights]
  if any(stored) and stored != list(_NORMALIZATION_VARIABLES):
    problems.append(f'variables {stored}, expected {list(_NORMALIZATION_VARIABLES)}')
  shapes = [tuple(array.shape) for _, array in weights]
  if shapes != [channels, channels, ()]:
    problems.append(f'shapes {shapes}, expected {[channels, channels, ()]}')
  if problems:
    raise ConversionError(f'{source}: Normalization layer {groups[0]} does not fit the model: '
                          + '; '.join(problems))
  (_, mean), (_, variance), (_, count) = weights
  statistics = {'mean': np.asarray(mean, np.float32), 'variance': np.asarray(variance,
                                                                             np.float32),
                'count': np.asarray(count, np.int32)}
  rest = {name: w for name, w in found.items() if name != groups[0]}
  return rest, {name: v for name, v in expected.items() if name != 'normalization'}, statistics


def _vgg16_built_size(found, source: str) -> int | None:
  """The input size a VGG16 file with a top was built at: fc1's rows are the flattened
  block5_pool map (224 -> 7 * 7 * 512). None without fc1."""
  if not found.get('fc1'):
    return None
  try:
    return input_size_of_fc1(int(found['fc1'][0][1].shape[0]))
  except ValueError as error:
    raise ConversionError(f'{source}: {error}') from None


def convert(path: str, model: str, include_top: bool = True, *,
            skip_unexpected: bool = False) -> tuple[dict, dict]:
  """Reads a Keras file of the family `model` ('resnet50', ...). Returns (variables, config)
  as skinjax.convert.keras_efficientnet_v2.convert does."""
  if model not in FAMILIES:
    raise ValueError(f'model must be one of {sorted(FAMILIES)}, got {model!r}')
  found = read_keras_weights(path)
  unnamed = [name for name in found if _UNNAMED_GROUP.match(name)]
  if model in AUTO_NAMED_FAMILIES:  # there auto names name the layers: ask the file instead
    unnamed = _groups_without_names(path)
  if unnamed:
    # Such files list the layers in Keras' graph order, which differs from the order the
    # code builds them where a block branches, and two same-shaped layers (V2's first
    # shortcut and its last 1x1) would swap unseen: so no guess is made.
    raise ConversionError(
        f'{path}: its {len(unnamed)} weight groups carry no layer names ({unnamed[0]}, ...; '
        'written by an early Keras 3), so they cannot be placed safely; load it in a current '
        'Keras and save it again (model.save_weights)')
  num_classes = None
  if include_top:
    top = found.get('predictions') or found.get('conv_preds')  # MobileNet's top is a 1x1 conv
    num_classes = int(top[-1][1].shape[0]) if top else 1000
  expected = expected_layers(create_model(model, num_classes=num_classes))
  built_size = _vgg16_built_size(found, str(path)) if model == 'vgg16' and include_top else None
  if built_size:  # VGG16's fc1 takes the flattened map: its shape is the file's input size's
    expected = keras_efficientnet_v2.expected_layers(
        abstract_variables(create_model(model, num_classes=num_classes), built_size), order=None)
  if model in AUTO_NAMED_FAMILIES:
    found = renumber_auto_names(found, expected, AUTO_NAMED_FAMILIES[model], str(path))
  found, expected, normalization = take_normalization(found, expected, str(path))
  variables, report = map_keras_weights(found, expected, skip_unexpected=skip_unexpected,
                                        source=str(path))
  if normalization:
    variables['batch_stats']['normalization'] = normalization
  config = {'model': model, 'num_classes': num_classes, 'include_preprocessing': False,
            'image_size': FAMILIES[model][1], 'source': str(path), 'report': report}
  if built_size:
    config['image_size'] = built_size  # the only size range (to +31) that fc1 fits
  return variables, config
