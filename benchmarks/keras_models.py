"""The papers' models in Keras 3, the baselines skinjax is timed against.

Each builder returns an uncompiled `keras.Model` from float images [B, H, W, 3] to logits,
the same graph as the skinjax model of the same name (skinjax/models/):
  deepconvnet             paper 1's DeepConvNet (4 x [Conv 3x3 + ReLU -> MaxPool], 64, 32, 7)
  unet / unet_small / unet_tiny  paper 1's U-Net (BatchNorm, spatial dropout 0.4)
  efficientnetv2_b3_skin  keras.applications.EfficientNetV2B3 under paper 2's head
  efficientnetv2_tiny_skin  Keras' EfficientNetV2 builder at width = depth = 0.25 (tests)
  resnet50_skin, vgg16_skin, ...  the comparison networks (COMPARISON_NETWORKS) under
                          paper 2's head
"""

import keras
from keras import layers

# Keras Conv2D/Dense defaults are the papers' (Glorot-uniform, zero bias); no change.


def deepconvnet(image_size: int = 28, num_classes: int = 7) -> keras.Model:
  inputs = keras.Input((image_size, image_size, 3))
  x = inputs
  for features in (16, 32, 64, 128):
    x = layers.Conv2D(features, 3, padding='same', activation='relu')(x)
    x = layers.MaxPooling2D(2)(x)
  x = layers.Flatten()(x)
  x = layers.Dense(64, activation='relu')(x)
  x = layers.Dense(32, activation='relu')(x)
  return keras.Model(inputs, layers.Dense(num_classes)(x), name='deepconvnet')


def unet(image_size: int = 224, base_width: int = 64, depth: int = 4,
         dropout_rate: float = 0.4) -> keras.Model:
  def block(x, features):
    for _ in range(2):
      x = layers.Conv2D(features, 3, padding='same')(x)
      x = layers.Activation('relu')(layers.BatchNormalization(epsilon=1e-3)(x))
    return x

  inputs = keras.Input((image_size, image_size, 3))
  x, skips = inputs, []
  for level in range(depth):
    x = block(x, base_width * 2**level)
    skips.append(x)
    x = layers.SpatialDropout2D(dropout_rate)(layers.MaxPooling2D(2)(x))
  x = block(x, base_width * 2**depth)
  for level in reversed(range(depth)):
    x = layers.Conv2DTranspose(base_width * 2**level, 2, strides=2, padding='same')(x)
    x = layers.SpatialDropout2D(dropout_rate)(layers.Concatenate()([x, skips[level]]))
    x = block(x, base_width * 2**level)
  return keras.Model(inputs, layers.Conv2D(1, 1)(x), name='unet')


def skin_head(feature_map, num_classes: int, hidden_units: int = 256):
  """Paper 2's head (skinjax/models/heads.py), logits out."""
  x = layers.GlobalMaxPooling2D()(feature_map)
  x = layers.BatchNormalization(epsilon=1e-3)(x)
  x = layers.Dropout(0.15)(x)
  x = layers.Dense(hidden_units, activation='relu')(x)
  x = layers.BatchNormalization(epsilon=1e-3)(x)
  x = layers.Dropout(0.2)(x)
  return layers.Dense(num_classes)(x)


def efficientnetv2_skin(image_size: int = 300, num_classes: int = 9, *,
                        tiny: bool = False) -> keras.Model:
  shape = (image_size, image_size, 3)
  if tiny:
    # The public builder's own table at skinjax's EfficientNetV2Tiny scaling.
    from keras.src.applications import efficientnet_v2
    backbone = efficientnet_v2.EfficientNetV2(
        width_coefficient=0.25, depth_coefficient=0.25, default_size=image_size,
        include_top=False, weights=None, input_shape=shape, name='efficientnetv2-tiny')
  else:
    backbone = keras.applications.EfficientNetV2B3(include_top=False, weights=None,
                                                   input_shape=shape)
  return keras.Model(backbone.input, skin_head(backbone.output, num_classes),
                     name=backbone.name + '_skin')


# The comparison networks under paper 2's head (skinjax registry name -> keras.applications
# model, its preprocess_input mode). 'caffe': RGB -> BGR minus the ImageNet BGR means; 'tf':
# x / 127.5 - 1; None: the model preprocesses itself (EfficientNet's Rescaling +
# Normalization layers).
COMPARISON_NETWORKS = {
    'resnet50_skin': ('ResNet50', 'caffe'),
    'resnet50v2_skin': ('ResNet50V2', 'tf'),
    'vgg16_skin': ('VGG16', 'caffe'),
    'inceptionv3_skin': ('InceptionV3', 'tf'),
    'xception_skin': ('Xception', 'tf'),
    'mobilenet_skin': ('MobileNet', 'tf'),
    'mobilenetv2_skin': ('MobileNetV2', 'tf'),
    'efficientnet_b3_skin': ('EfficientNetB3', None),
}


def comparison_skin(name: str, image_size: int, num_classes: int = 9) -> keras.Model:
  """keras.applications' network `name` names, headless, under paper 2's head, with its
  preprocess_input as layers in front (skinjax's `<name>` preprocesses inside too)."""
  application, mode = COMPARISON_NETWORKS[name]
  shape = (image_size, image_size, 3)
  inputs = keras.Input(shape)
  if mode == 'tf':
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
  elif mode == 'caffe':
    x = keras.layers.Lambda(lambda t: t[..., ::-1] - keras.ops.convert_to_tensor(
        [103.939, 116.779, 123.68]))(inputs)
  else:
    x = inputs
  backbone = getattr(keras.applications, application)(include_top=False, weights=None,
                                                       input_shape=shape)
  return keras.Model(inputs, skin_head(backbone(x), num_classes), name=backbone.name + '_skin')


def build(name: str, image_size: int) -> keras.Model:
  """The Keras counterpart of skinjax's registry model `name`."""
  builders = {
      'deepconvnet': lambda: deepconvnet(image_size),
      'unet': lambda: unet(image_size),
      'unet_small': lambda: unet(image_size, base_width=16),
      'unet_tiny': lambda: unet(image_size, base_width=2, depth=2),
      'efficientnetv2_b3_skin': lambda: efficientnetv2_skin(image_size),
      'efficientnetv2_tiny_skin': lambda: efficientnetv2_skin(image_size, tiny=True),
      **{network: lambda network=network: comparison_skin(network, image_size)
         for network in COMPARISON_NETWORKS},
  }
  if name not in builders:
    raise ValueError(f'no Keras baseline for model {name!r}; known: {sorted(builders)}')
  return builders[name]()
