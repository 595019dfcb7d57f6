"""Model registry: a name -> a Linen module constructor.

Each constructor takes `num_classes`-style keyword arguments of its module plus `dtype`
(compute), `param_dtype` (storage) and `axis_name` (pmap axis for BatchNorm).
"""

from functools import partial
from typing import Callable

import flax.linen as nn

from skinjax.models.deepconvnet import DeepConvNet
from skinjax.models.efficientnet_v2 import (EfficientNetV2, EfficientNetV2B0, EfficientNetV2B1,
                                            EfficientNetV2B2, EfficientNetV2B3,
                                            EfficientNetV2Tiny)
from skinjax.models.heads import Classifier, SkinHead
from skinjax.models.resnet import ResNet, ResNet50, ResNet50V2, ResNetTiny, ResNetV2Tiny
from skinjax.models.unet import UNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    'deepconvnet': DeepConvNet,
    'unet': UNet,
    # Same graph at a quarter of the width, for fast demos and CPU runs.
    'unet_small': partial(UNet, base_width=16),
    # For tests: two channels at the first level and two levels, quick to compile.
    'unet_tiny': partial(UNet, base_width=2, depth=2),
    # Keras' ImageNet models (1000 classes with a top; num_classes=None: headless).
    'efficientnetv2_b0': EfficientNetV2B0,
    'efficientnetv2_b1': EfficientNetV2B1,
    'efficientnetv2_b2': EfficientNetV2B2,
    'efficientnetv2_b3': EfficientNetV2B3,
    # For tests: 8 blocks, 8 to 48 channels.
    'efficientnetv2_tiny': EfficientNetV2Tiny,
    # Paper 2: EfficientNetV2-B3 under its custom head, 9 ISIC classes by default.
    'efficientnetv2_b3_skin': partial(Classifier, backbone=EfficientNetV2B3),
    'efficientnetv2_tiny_skin': partial(Classifier, backbone=EfficientNetV2Tiny),
    # The papers' comparison networks, as keras.applications builds them (1000 classes
    # with a top; num_classes=None: headless; Keras' preprocess_input as an option).
    'resnet50': ResNet50,
    'resnet50v2': ResNet50V2,
    # For tests: one or two blocks per stage.
    'resnet_tiny': ResNetTiny,
    'resnetv2_tiny': ResNetV2Tiny,
    # Under paper 2's head, trained as its B3 is; pixels in [0, 255], preprocessed inside.
    'resnet50_skin': partial(Classifier, backbone=partial(ResNet50, include_preprocessing=True)),
    'resnet50v2_skin': partial(Classifier,
                               backbone=partial(ResNet50V2, include_preprocessing=True)),
    'resnet_tiny_skin': partial(Classifier,
                                backbone=partial(ResNetTiny, include_preprocessing=True)),
}

# Keras' smallest input for each family (keras.applications refuses less).
MIN_INPUT_SIZES = {ResNet: 32}


def task_of(name: str) -> str:
  """'segmentation' for the U-Nets (a logit per pixel), else 'classification'."""
  constructor = MODELS[name]
  module = getattr(constructor, 'func', constructor)  # a partial's module
  return 'segmentation' if module is UNet else 'classification'


def input_size_problem(model: nn.Module, size: int) -> str | None:
  """Why `model` cannot take size x size images, or None when it can."""
  if isinstance(model, UNet) and size % 2**model.depth:
    return f'a multiple of {2**model.depth} (2**depth for depth {model.depth})'
  # Four VALID 2x2 pools: 28 -> 14 -> 7 -> 3 -> 1; below 16 the last map is empty.
  if isinstance(model, DeepConvNet) and size < 16:
    return 'at least 16 (four 2x2 poolings)'
  backbone = model.backbone if isinstance(model, Classifier) else type(model)
  backbone = getattr(backbone, 'func', backbone)  # a partial's module
  smallest = MIN_INPUT_SIZES.get(backbone)
  if smallest is not None and size < smallest:
    return f'at least {smallest} (as keras.applications builds {backbone.__name__})'
  return None


def create_model(name: str, **kwargs) -> nn.Module:
  """Builds the registered model `name`; unknown names list the known ones."""
  if name not in MODELS:
    raise ValueError(f'unknown model {name!r}; known models: {", ".join(sorted(MODELS))}')
  return MODELS[name](**kwargs)


__all__ = ['MODELS', 'create_model', 'input_size_problem', 'task_of', 'Classifier', 'DeepConvNet', 'EfficientNetV2',
           'EfficientNetV2B0', 'EfficientNetV2B1', 'EfficientNetV2B2', 'EfficientNetV2B3',
           'ResNet', 'ResNet50', 'ResNet50V2', 'SkinHead', 'UNet']
