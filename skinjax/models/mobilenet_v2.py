"""Keras' MobileNetV2 (`keras.applications.MobileNetV2`), layer for layer, for the papers'
comparison tables.

As keras.applications builds it (keras/src/applications/mobilenet_v2.py):
- Stem: 3x3 stride-2 convolution, TensorFlow SAME padding, no bias (`Conv1`, 32 x alpha
  filters through `_make_divisible`), BatchNorm (`bn_Conv1`), ReLU6.
- 17 inverted residual blocks: block 0 (`expanded_conv_*`) has no expansion; blocks 1 .. 16
  (`block_{i}_*`) expand with a 1x1 convolution (`_expand`, 6x the input channels) ->
  BatchNorm -> ReLU6. Then a 3x3 depthwise convolution (`_depthwise`) -> BatchNorm -> ReLU6
  -> 1x1 projection (`_project`, `_make_divisible(int(filters * alpha), 8)` filters) ->
  BatchNorm, no activation. A strided block pads first as `imagenet_utils.correct_pad` says
  (((0, 1), (0, 1)) on even maps, ((1, 1), (1, 1)) on odd ones; `_pad`) and convolves VALID;
  the others SAME. The input is added back (`_add`) where the block keeps the stride and the
  channel count. No convolution has a bias.
- Last convolution `Conv_1` (1x1, 1280 filters; `_make_divisible(1280 * alpha, 8)` when
  alpha > 1), BatchNorm `Conv_1_bn`, ReLU6 `out_relu`.
- BatchNorm epsilon 1e-3, momentum 0.999; Glorot-uniform kernels.
- Top: global average pooling and Dense `predictions` (1000 classes); the logits are
  returned, Keras' softmax left out. `num_classes=None`: headless.
- `include_preprocessing` (off by default, as Keras' model has none): Keras'
  `mobilenet_v2.preprocess_input` (mode 'tf': x / 127.5 - 1) inside the model, for pixels in
  [0, 255].

Module names are Keras' layer names, so that converted weights need no name table.
"""

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from skinjax.models.backbone_features import BackboneFeatures
from skinjax.models.deepconvnet import keras_kernel_init
from skinjax.models.depthwise import DepthwiseConv
from skinjax.models.gradcam_map import mark_gradcam_map
from skinjax.models.mobilenet import relu6

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.999
# (filters, strides, expansion) of blocks 0 .. 16, before `alpha`.
BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6),
          (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6),
          (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6))
# For tests: every kind of block (no expansion, strided, residual, a stride-1 width
# change), all five strides, expansion 2.
TINY_BLOCKS = ((16, 1, 1), (24, 2, 2), (24, 1, 2), (32, 2, 2), (64, 2, 2), (96, 1, 2),
               (160, 2, 2))


def make_divisible(value: float, divisor: int = 8) -> int:
  """Keras' `_make_divisible`: the nearest multiple of `divisor`, never 10% below `value`."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


def correct_pad(size: int, kernel: int = 3) -> tuple[int, int]:
  """Keras' `imagenet_utils.correct_pad` along one axis of `size` pixels."""
  return kernel // 2 - (1 - size % 2), kernel // 2


class MobileNetV2(nn.Module):
  """`__call__(images, train=False, return_features=False)`.

  images: float[B, H, W, 3]; pixels in [0, 255] with `include_preprocessing`, else already
  preprocessed as Keras' `preprocess_input` does (in [-1, 1]). Returns float32 logits
  [B, num_classes] (pooled features [B, 1280] when headless), and with `return_features` a
  BackboneFeatures: the last map at each stride 2, 4, 8, 16 (the block outputs before a
  strided block) and 32 (`out_relu`), last_conv (`out_relu`) and pooled (its global
  average).

  Attributes:
    blocks: (filters, strides, expansion) of each inverted residual block (BLOCKS: Keras').
    alpha: Keras' width multiplier.
    last_filters: `Conv_1`'s filters; None: Keras' (1280, more when alpha > 1).
    trainable_blocks: with `train`, only the last N blocks and the top (`Conv_1` and
      after) train; the stem and the blocks before them run in inference mode without
      gradient (None: all train).
  """

  blocks: tuple[tuple[int, int, int], ...] = BLOCKS
  alpha: float = 1.0
  last_filters: int | None = None
  num_classes: int | None = 1000
  include_preprocessing: bool = False
  trainable_blocks: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  def block_names(self) -> list[str]:
    """Each block's Keras prefix, in network order (the units `trainable_blocks` counts)."""
    return ['expanded_conv'] + [f'block_{i}' for i in range(1, len(self.blocks))]

  def _conv(self, features, kernel, strides=1, *, name):
    return nn.Conv(features, (kernel, kernel), (strides, strides), padding='SAME',
                   use_bias=False, kernel_init=keras_kernel_init, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=name)

  def _norm(self, train, *, name):
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPSILON, dtype=self.dtype, param_dtype=self.param_dtype,
                        axis_name=self.axis_name, use_fast_variance=False, name=name)

  def _block(self, inputs, filters, strides, expansion, train, prefix, first):
    x = inputs
    if not first:  # block 0 does not expand
      x = self._conv(expansion * inputs.shape[-1], 1, name=f'{prefix}_expand')(x)
      x = relu6(self._norm(train, name=f'{prefix}_expand_BN')(x))
    padding = 'SAME'
    if strides > 1:
      x = jnp.pad(x, ((0, 0), correct_pad(x.shape[1]), correct_pad(x.shape[2]), (0, 0)))
      padding = 'VALID'
    x = DepthwiseConv(3, strides, padding, dtype=self.dtype, param_dtype=self.param_dtype,
                      name=f'{prefix}_depthwise')(x)
    x = relu6(self._norm(train, name=f'{prefix}_depthwise_BN')(x))
    outputs = make_divisible(int(filters * self.alpha))
    x = self._conv(outputs, 1, name=f'{prefix}_project')(x)
    x = self._norm(train, name=f'{prefix}_project_BN')(x)
    if strides == 1 and inputs.shape[-1] == outputs:
      x = inputs + x  # `_add`
    return x

  @nn.compact
  def __call__(self, images, *, train: bool = False, return_features: bool = False):
    if self.trainable_blocks is not None and self.trainable_blocks < 0:
      raise ValueError(f'trainable_blocks must be None or >= 0, got {self.trainable_blocks}')
    names = self.block_names()
    frozen = set()
    if self.trainable_blocks is not None:
      frozen = {'Conv1'} | set(names[:max(len(names) - self.trainable_blocks, 0)])

    def trains(unit):
      return train and unit not in frozen

    def after(unit, x):  # nothing before a frozen unit trains: no gradient through it
      return lax.stop_gradient(x) if train and unit in frozen else x

    x = images
    if self.include_preprocessing:  # mode 'tf'
      x = x.astype(jnp.float32) / 127.5 - 1.0
    x = x.astype(self.dtype)
    x = self._conv(make_divisible(32 * self.alpha), 3, 2, name='Conv1')(x)
    x = after('Conv1', relu6(self._norm(trains('Conv1'), name='bn_Conv1')(x)))
    pyramid = []
    for index, (name, (filters, strides, expansion)) in enumerate(zip(names, self.blocks)):
      if strides > 1:
        pyramid.append(x)  # the last map at this stride
      x = after(name, self._block(x, filters, strides, expansion, trains(name), name,
                                  first=index == 0))
    last = self.last_filters
    if last is None:  # Keras widens the last convolution only for alpha > 1
      last = make_divisible(1280 * self.alpha) if self.alpha > 1.0 else 1280
    x = self._conv(last, 1, name='Conv_1')(x)
    x = relu6(self._norm(train, name='Conv_1_bn')(x))  # `out_relu`
    x = mark_gradcam_map(self, x)
    pyramid.append(x)
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # GlobalAveragePooling2D
    output = pooled
    if self.num_classes is not None:
      output = nn.Dense(self.num_classes, kernel_init=keras_kernel_init, dtype=self.dtype,
                        param_dtype=self.param_dtype,
                        name='predictions')(pooled).astype(jnp.float32)
    if return_features:
      return output, BackboneFeatures(tuple(pyramid), x, pooled)
    return output


# For tests: 7 blocks at alpha 0.35 (8 to 56 channels), expansion 2, `Conv_1` 128 wide.
MobileNetV2Tiny = partial(MobileNetV2, blocks=TINY_BLOCKS, alpha=0.35, last_filters=128)
