"""Keras `keras.applications` weights -> skinjax variables, for the families whose Flax
modules carry Keras' layer names (skinjax.models.resnet: ResNet50, ResNet50V2).

The files are read as for EfficientNetV2 (skinjax.convert.keras_efficientnet_v2: `.keras`,
`.weights.h5`, legacy `.h5`), and every missing, unexpected or mis-shaped tensor is listed
in one error. Here a Flax module `conv2_block1_1_conv` is the Keras layer of that name, so
no name table is kept. Files whose weight groups carry no layer names (early Keras 3) are
refused: their order is Keras' graph order, not recoverable from the Flax model.
"""

import re

import flax.linen as nn
from flax import traverse_util

from skinjax.convert.keras_efficientnet_v2 import (BATCH_NORM_VARIABLES, ConversionError,
                                                    abstract_variables, map_keras_weights,
                                                    read_keras_weights)
from skinjax.models import create_model

# Registry name -> Keras' model, and its default input size.
FAMILIES = {
    'resnet50': ('keras.applications.ResNet50', 224),
    'resnet50v2': ('keras.applications.ResNet50V2', 224),
}

__all__ = ['FAMILIES', 'ConversionError', 'convert', 'expected_layers']


def creation_order(model, image_size: int = 32) -> tuple[list[tuple[str, ...]], dict]:
  """The paths of the model's modules in the order its code calls them, which is the order
  Keras creates the layers of the same names, and the variables' shapes. (`jax.eval_shape`
  returns dicts sorted by key, so the order is recorded apart.)"""
  order = []

  def record(call, args, kwargs, context):
    if context.method_name == '__call__' and context.module.path not in order:
      order.append(context.module.path)
    return call(*args, **kwargs)
  with nn.intercept_methods(record):
    variables = abstract_variables(model, image_size)
  return order, variables


def expected_layers(model, image_size: int = 32) -> dict[str, list[tuple[tuple, str, tuple]]]:
  """{Keras layer name: [(Flax path, Keras variable name, shape), ...]}, in creation order."""
  order, variables = creation_order(model, image_size)
  modules = {}
  for collection in ('params', 'batch_stats'):
    for path, leaf in traverse_util.flatten_dict(variables.get(collection, {})).items():
      modules.setdefault(path[:-1], {})[(collection, path[-1])] = leaf.shape
  layers = {}
  for module in (path for path in order if path in modules):
    leaves = modules[module]
    if ('batch_stats', 'mean') in leaves:
      names = BATCH_NORM_VARIABLES
    else:
      names = [(key, key[1]) for key in (('params', 'kernel'), ('params', 'bias'))
               if key in leaves]
    layers['_'.join(module)] = [((key[0],) + module + (key[1],), keras, leaves[key])
                                for key, keras in names]
  return layers


# How Keras 3 keys a weight group in a file that does not name its layers.
_UNNAMED_GROUP = re.compile(r'^(conv2d|batch_normalization|dense|depthwise_conv2d)(_\d+)?$')


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
