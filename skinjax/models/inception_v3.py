"""Keras' InceptionV3 (`keras.applications.InceptionV3`), layer for layer, for the papers'
comparison tables.

As keras.applications builds it (keras/src/applications/inception_v3.py):
- Every convolution is Keras' `conv2d_bn`: Conv2D without a bias (Glorot-uniform), then
  BatchNormalization without a scale (`scale=False`: no gamma; epsilon 1e-3, momentum
  0.99), then ReLU. Padding 'same' (TensorFlow's SAME) unless a layer says 'valid'.
- Stem: 3x3 stride 2 VALID (32), 3x3 VALID (32), 3x3 SAME (64), 3x3 stride-2 VALID max
  pooling, 1x1 (80), 3x3 VALID (192), max pooling again.
- Mixed blocks, concatenated in Keras' branch order (`mixed0` .. `mixed10`): three of
  kind A (1x1 / 5x5 / double 3x3 / pooled 1x1 of 32, 64, 64 channels), reduction A
  (`mixed3`: 3x3 stride 2 / double 3x3 stride 2 / max pooling), four of kind B (1x1 /
  factorised 7x7 / double factorised 7x7 / pooled 1x1; 7x7 widths 128, 160, 160, 192),
  reduction B (`mixed8`) and two of kind C (1x1 / 3x3 split into 1x3 and 3x1 / double 3x3
  split likewise / pooled 1x1). The branches' 3x3 average pooling is stride 1 SAME, and as
  in TensorFlow its border windows average only the pixels inside the image.
- Top: global average pooling (`avg_pool`) and Dense `predictions` (1000 classes); the
  logits are returned, Keras' softmax left out. `num_classes=None`: headless.
- `include_preprocessing` (off by default, as Keras' model has none): Keras'
  `inception_v3.preprocess_input` (mode 'tf': x / 127.5 - 1) inside the model, for pixels in
  [0, 255].

Names: Keras names no conv2d_bn layer, so they get its per-session counters (`conv2d`,
`conv2d_1`, ..., `batch_normalization`, ...). The modules here carry the names a fresh
Keras session gives, in creation order (the convolution and BatchNorm of a conv2d_bn share
the number); skinjax.convert.keras_applications renumbers a file's auto-named layers by
rank (a second model in one session, or TF-Keras 2's conv2d_1 .. conv2d_94) before mapping.
"""

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from skinjax.models.backbone_features import BackboneFeatures
from skinjax.models.deepconvnet import keras_kernel_init
from skinjax.models.gradcam_map import mark_gradcam_map

BN_EPSILON = 1e-3  # Keras' BatchNormalization defaults; conv2d_bn sets neither
BN_MOMENTUM = 0.99
# The mixed blocks in Keras' order: (kind, width); the width is the pooled branch's in kind
# A and the factorised 7x7 branches' in kind B.
INCEPTION_V3_BLOCKS = (('a', 32), ('a', 64), ('a', 64), ('reduction_a', 0), ('b', 128),
                       ('b', 160), ('b', 160), ('b', 192), ('reduction_b', 0), ('c', 0),
                       ('c', 0))
# For tests: one block of each kind.
TINY_BLOCKS = (('a', 32), ('reduction_a', 0), ('b', 128), ('reduction_b', 0), ('c', 0))


def _avg_pool_same(x):
  """AveragePooling2D(3, strides=1, padding='same'): borders average the pixels inside."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding='SAME', count_include_pad=False)


def _max_pool(x):
  """MaxPooling2D(3, strides=2), 'valid'."""
  return nn.max_pool(x, (3, 3), (2, 2), padding='VALID')


class InceptionV3(nn.Module):
  """`__call__(images, train=False, return_features=False)`.

  images: float[B, H, W, 3], H and W >= 75; pixels in [0, 255] with
  `include_preprocessing`, else already preprocessed as Keras' `preprocess_input` does.
  Returns float32 logits [B, num_classes] (pooled features [B, 2048] when headless), and with
  `return_features` a BackboneFeatures: the last map at each stride 2 (the stem's third
  convolution), 4 (its fifth), 8 and 16 (the inputs of the two reductions) and 32 (the
  output), last_conv (the last block's output, Keras' `mixed10`) and pooled (`avg_pool`).
  With VALID layers a stride-s map is a little under H/s (75: 35, 15, 7, 3, 1).

  Attributes:
    blocks: the mixed blocks, (kind, width) as INCEPTION_V3_BLOCKS.
    width_divisor: every convolution's filters are divided by it (1: Keras' network).
    trainable_blocks: with `train`, only the last N mixed blocks (and the top) train; the
      stem and the blocks before them run in inference mode without gradient (None: all).
  """

  blocks: tuple[tuple[str, int], ...] = INCEPTION_V3_BLOCKS
  width_divisor: int = 1
  num_classes: int | None = 1000
  include_preprocessing: bool = False
  trainable_blocks: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  def block_names(self) -> list[str]:
    return [f'mixed{i}' for i in range(len(self.blocks))]

  def _block_a(self, conv_bn, x, pool_width):
    branch1x1 = conv_bn(x, 64, 1, 1)
    branch5x5 = conv_bn(conv_bn(x, 48, 1, 1), 64, 5, 5)
    branch3x3dbl = conv_bn(conv_bn(conv_bn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
    branch_pool = conv_bn(_avg_pool_same(x), pool_width, 1, 1)
    return [branch1x1, branch5x5, branch3x3dbl, branch_pool]

  def _reduction_a(self, conv_bn, x, _):
    branch3x3 = conv_bn(x, 384, 3, 3, strides=2, padding='VALID')
    branch3x3dbl = conv_bn(conv_bn(x, 64, 1, 1), 96, 3, 3)
    branch3x3dbl = conv_bn(branch3x3dbl, 96, 3, 3, strides=2, padding='VALID')
    return [branch3x3, branch3x3dbl, _max_pool(x)]

  def _block_b(self, conv_bn, x, width):
    branch1x1 = conv_bn(x, 192, 1, 1)
    branch7x7 = conv_bn(conv_bn(conv_bn(x, width, 1, 1), width, 1, 7), 192, 7, 1)
    branch7x7dbl = conv_bn(x, width, 1, 1)
    for filters, rows, cols in ((width, 7, 1), (width, 1, 7), (width, 7, 1), (192, 1, 7)):
      branch7x7dbl = conv_bn(branch7x7dbl, filters, rows, cols)
    branch_pool = conv_bn(_avg_pool_same(x), 192, 1, 1)
    return [branch1x1, branch7x7, branch7x7dbl, branch_pool]

  def _reduction_b(self, conv_bn, x, _):
    branch3x3 = conv_bn(conv_bn(x, 192, 1, 1), 320, 3, 3, strides=2, padding='VALID')
    branch7x7x3 = conv_bn(conv_bn(conv_bn(x, 192, 1, 1), 192, 1, 7), 192, 7, 1)
    branch7x7x3 = conv_bn(branch7x7x3, 192, 3, 3, strides=2, padding='VALID')
    return [branch3x3, branch7x7x3, _max_pool(x)]

  def _block_c(self, conv_bn, x, _):
    branch1x1 = conv_bn(x, 320, 1, 1)
    branch3x3 = conv_bn(x, 384, 1, 1)
    # Keras creates the 1x3 before the 3x1 (their numbers), and concatenates them so.
    branch3x3 = [conv_bn(branch3x3, 384, 1, 3), conv_bn(branch3x3, 384, 3, 1)]
    branch3x3dbl = conv_bn(conv_bn(x, 448, 1, 1), 384, 3, 3)
    branch3x3dbl = [conv_bn(branch3x3dbl, 384, 1, 3), conv_bn(branch3x3dbl, 384, 3, 1)]
    branch_pool = conv_bn(_avg_pool_same(x), 192, 1, 1)
    return [branch1x1, *branch3x3, *branch3x3dbl, branch_pool]

  @nn.compact
  def __call__(self, images, *, train: bool = False, return_features: bool = False):
    if self.trainable_blocks is not None and self.trainable_blocks < 0:
      raise ValueError(f'trainable_blocks must be None or >= 0, got {self.trainable_blocks}')
    names = self.block_names()
    frozen = set()
    if self.trainable_blocks is not None:
      frozen = {'stem'} | set(names[:max(len(names) - self.trainable_blocks, 0)])

    def trains(unit):
      return train and unit not in frozen

    def after(unit, x):  # nothing before a frozen unit trains: no gradient through it
      return lax.stop_gradient(x) if train and unit in frozen else x

    created = [0]  # conv2d_bn layers so far: Keras' counters, as a fresh session numbers them

    def conv_bn(x, filters, rows, cols, strides=1, padding='SAME', *, train):
      n = created[0]
      created[0] += 1
      suffix = f'_{n}' if n else ''
      x = nn.Conv(max(filters // self.width_divisor, 1), (rows, cols), (strides, strides),
                  padding=padding, use_bias=False, kernel_init=keras_kernel_init,
                  dtype=self.dtype, param_dtype=self.param_dtype, name=f'conv2d{suffix}')(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                       epsilon=BN_EPSILON, use_scale=False, dtype=self.dtype,
                       param_dtype=self.param_dtype, axis_name=self.axis_name,
                       use_fast_variance=False, name=f'batch_normalization{suffix}')(x)
      return nn.relu(x)

    x = images.astype(jnp.float32) / 127.5 - 1.0 if self.include_preprocessing else images
    x = x.astype(self.dtype)
    stem = partial(conv_bn, train=trains('stem'))
    x = stem(x, 32, 3, 3, strides=2, padding='VALID')
    x = stem(x, 32, 3, 3, padding='VALID')
    x = stem(x, 64, 3, 3)
    pyramid = [x]
    x = stem(_max_pool(x), 80, 1, 1, padding='VALID')
    x = stem(x, 192, 3, 3, padding='VALID')
    pyramid.append(x)
    x = after('stem', _max_pool(x))
    build = {'a': self._block_a, 'reduction_a': self._reduction_a, 'b': self._block_b,
             'reduction_b': self._reduction_b, 'c': self._block_c}
    for name, (kind, width) in zip(names, self.blocks):
      if kind.startswith('reduction'):
        pyramid.append(x)  # the last map at this stride
      branches = build[kind](partial(conv_bn, train=trains(name)), x, width)
      x = after(name, jnp.concatenate(branches, axis=-1))  # Keras' `mixed{i}`
    x = mark_gradcam_map(self, x)
    pyramid.append(x)
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # Keras `avg_pool`
    output = pooled
    if self.num_classes is not None:
      output = nn.Dense(self.num_classes, kernel_init=keras_kernel_init, dtype=self.dtype,
                        param_dtype=self.param_dtype,
                        name='predictions')(pooled).astype(jnp.float32)
    if return_features:
      return output, BackboneFeatures(tuple(pyramid), x, pooled)
    return output


# For tests: one mixed block of each kind at an eighth of the width (4 to 56 filters).
InceptionV3Tiny = partial(InceptionV3, blocks=TINY_BLOCKS, width_divisor=8)
