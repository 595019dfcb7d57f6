"""Keras `keras.applications` weights -> skinjax variables, for the families whose Flax
modules carry Keras' layer names (skinjax.models.resnet: ResNet50, ResNet50V2).

The files are read as for EfficientNetV2 (skinjax.convert.keras_efficientnet_v2: `.keras`,
`.weights.h5`, legacy `.h5`), and every missing, unexpected or mis-shaped tensor is listed
in one error. Here a Flax module `conv2_block1_1_conv` is the Keras layer of that name, so
no name table is kept. Files whose weight groups carry no layer names (early Keras 3) are
refused: their order is Keras' graph order, not recoverable from the Flax model.
"""

import re

from skinjax.convert import keras_efficientnet_v2
from skinjax.convert.keras_efficientnet_v2 import (ConversionError, abstract_variables,
                                                    map_keras_weights, read_keras_weights)
from skinjax.models import create_model

# Registry name -> Keras' model, and its default input size.
FAMILIES = {
    'resnet50': ('keras.applications.ResNet50', 224),
    'resnet50v2': ('keras.applications.ResNet50V2', 224),
}

__all__ = ['FAMILIES', 'ConversionError', 'convert', 'expected_layers']


def expected_layers(model) -> dict[str, list[tuple[tuple, str, tuple]]]:
  """{Keras layer name: [(Flax path, Keras variable name, shape), ...]}: a module's path is
  its Keras name, so no order or name table is needed."""
  return keras_efficientnet_v2.expected_layers(abstract_variables(model), order=None)


# How Keras 3 keys a weight group in a file that does not name its layers.
_UNNAMED_GROUP = re.compile(
    r'^(conv2d|batch_normalization|dense|depthwise_conv2d|separable_conv2d)(_\d+)?$')


def convert(path: str, model: str, include_top: bool = True, *,
            skip_unexpected: bool = False) -> tuple[dict, dict]:
  """Reads a Keras file of the family `model` ('resnet50', ...). Returns (variables, config)
  as skinjax.convert.keras_efficientnet_v2.convert does."""
  if model not in FAMILIES:
    raise ValueError(f'model must be one of {sorted(FAMILIES)}, got {model!r}')
  found = read_keras_weights(path)
  unnamed = [name for name in found if _UNNAMED_GROUP.match(name)]
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
    top = found.get('predictions')
    num_classes = int(top[-1][1].shape[0]) if top else 1000
  expected = expected_layers(create_model(model, num_classes=num_classes))
  variables, report = map_keras_weights(found, expected, skip_unexpected=skip_unexpected,
                                        source=str(path))
  config = {'model': model, 'num_classes': num_classes, 'include_preprocessing': False,
            'image_size': FAMILIES[model][1], 'source': str(path), 'report': report}
  return variables, config
