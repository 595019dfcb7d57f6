"""Model registry: a name -> a Linen module constructor.

Each constructor takes `num_classes`-style keyword arguments of its module plus `dtype`
(compute), `param_dtype` (storage) and `axis_name` (pmap axis for BatchNorm).
"""

from functools import partial
from typing import Callable

import flax.linen as nn

from skinjax.models.deepconvnet import DeepConvNet
from skinjax.models.efficientnet import EfficientNet, EfficientNetB3, EfficientNetTiny
from skinjax.models.efficientnet_v2 import (EfficientNetV2, EfficientNetV2B0, EfficientNetV2B1,
                                            EfficientNetV2B2, EfficientNetV2B3,
                                            EfficientNetV2Tiny)
from skinjax.models.heads import Classifier, SkinHead
from skinjax.models.inception_v3 import InceptionV3, InceptionV3Tiny
from skinjax.models.mobilenet import MobileNet, MobileNetTiny
from skinjax.models.mobilenet_v2 import MobileNetV2, MobileNetV2Tiny
from skinjax.models.resnet import ResNet, ResNet50, ResNet50V2, ResNetTiny, ResNetV2Tiny
from skinjax.models.unet import UNet
from skinjax.models.vgg import VGG, VGG16, VGGTiny
from skinjax.models.xception import Xception, XceptionTiny

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
}


def _under_paper2_head(backbone) -> Callable[..., nn.Module]:
  """`backbone` under paper 2's head, taking pixels in [0, 255]: Keras' preprocess_input
  (EfficientNet: its Rescaling and Normalization) runs inside the model."""
  return partial(Classifier, backbone=partial(backbone, include_preprocessing=True))


# The papers' comparison networks, as keras.applications builds them (1000 classes with a
# top; num_classes=None: headless; Keras' preprocess_input as an option); each under paper
# 2's head as `<name>_skin`, trained as its B3 is. The tiny variants are for tests:
#   resnet_tiny, resnetv2_tiny: one block per stage (V2: two in conv2), an eighth of the width;
#   mobilenet_tiny, mobilenetv2_tiny: 6 (V2: 7) blocks at a quarter (V2: 0.35) of the width;
#   inceptionv3_tiny: one mixed block of each kind (A, reduction A, B, reduction B, C), 1/8
#     of the width; vgg16_tiny: five blocks of one to three convolutions, 8 to 32 channels,
#     a 64-unit top; xception_tiny: one middle-flow block, 8 to 64 channels;
#   efficientnet_tiny: Keras' builder at width 0.25, depth 0.3 (8 blocks, 8 to 80 channels).
COMPARISON_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    'resnet50': ResNet50, 'resnet50v2': ResNet50V2, 'resnet_tiny': ResNetTiny,
    'resnetv2_tiny': ResNetV2Tiny,
    'mobilenet': MobileNet, 'mobilenetv2': MobileNetV2, 'mobilenet_tiny': MobileNetTiny,
    'mobilenetv2_tiny': MobileNetV2Tiny,
    'inceptionv3': InceptionV3, 'inceptionv3_tiny': InceptionV3Tiny,
    'vgg16': VGG16, 'vgg16_tiny': VGGTiny,
    'xception': Xception, 'xception_tiny': XceptionTiny,
    'efficientnet_b3': EfficientNetB3, 'efficientnet_tiny': EfficientNetTiny,
}
for _name, _backbone in COMPARISON_BACKBONES.items():
  MODELS[_name] = _backbone
  MODELS[f'{_name}_skin'] = _under_paper2_head(_backbone)
del _name, _backbone

# Keras' smallest input for each family (keras.applications refuses less).
MIN_INPUT_SIZES = {ResNet: 32, MobileNet: 32, MobileNetV2: 32, InceptionV3: 75,
                   VGG: 32, Xception: 71, EfficientNet: 32}


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


__all__ = ['MODELS', 'COMPARISON_BACKBONES', 'create_model', 'input_size_problem', 'task_of',
           'Classifier', 'DeepConvNet', 'EfficientNet', 'EfficientNetB3', 'EfficientNetV2',
           'EfficientNetV2B0', 'EfficientNetV2B1', 'EfficientNetV2B2', 'EfficientNetV2B3',
           'InceptionV3', 'MobileNet', 'MobileNetV2', 'ResNet', 'ResNet50', 'ResNet50V2',
           'SkinHead', 'UNet', 'VGG', 'VGG16', 'Xception']
