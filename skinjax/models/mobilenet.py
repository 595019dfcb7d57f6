"""Keras' MobileNet (`keras.applications.MobileNet`, depth multiplier 1), layer for layer, for
the papers' comparison tables.

As keras.applications builds it (keras/src/applications/mobilenet.py):
- Stem: 3x3 stride-2 convolution, TensorFlow SAME padding, no bias (`conv1`), BatchNorm
  (`conv1_bn`), ReLU6.
- 13 depthwise-separable blocks `{i}` = 1 .. 13: 3x3 depthwise convolution (`conv_dw_{i}`,
  no bias) -> BatchNorm -> ReLU6 -> 1x1 convolution (`conv_pw_{i}`, no bias) -> BatchNorm ->
  ReLU6. A strided block pads with ZeroPadding2D(((0, 1), (0, 1))) and convolves VALID
  (`conv_pad_{i}`); the others convolve SAME. Blocks 2, 4, 6 and 12 stride 2.
- Widths 32 (stem), 64, 128, 128, 256, 256, 512 x 6, 1024, 1024, each times `alpha` and
  truncated as Keras does (`int(filters * alpha)`).
- BatchNorm as Keras' defaults: epsilon 1e-3, momentum 0.99. Glorot-uniform kernels.
- Top: global average pooling (keepdims), Dropout(1e-3) in training, then a 1x1
  convolution with a bias (`conv_preds`, kernel [1, 1, 1024, classes]) reshaped to
  [B, classes]: a Dense in effect, kept a convolution so that Keras files convert. The
  logits are returned, Keras' softmax left out. `num_classes=None`: headless.
- `include_preprocessing` (off by default, as Keras' model has none): Keras'
  `mobilenet.preprocess_input` (mode 'tf': x / 127.5 - 1) inside the model, for pixels in
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
from skinjax.models.dropout import ExampleDropout
from skinjax.models.gradcam_map import mark_gradcam_map

BN_EPSILON = 1e-3  # Keras BatchNormalization's defaults, which MobileNet keeps
BN_MOMENTUM = 0.99
# (pointwise filters, strides) of blocks 1 .. 13, before `alpha`.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
# For tests: every kind of layer (SAME and padded VALID depthwise blocks), all five strides.
TINY_BLOCKS = ((64, 1), (128, 2), (256, 2), (512, 2), (512, 1), (1024, 2))


def relu6(x):
  return jnp.clip(x, 0, 6)


class MobileNet(nn.Module):
  """`__call__(images, train=False, return_features=False)`.

  images: float[B, H, W, 3]; pixels in [0, 255] with `include_preprocessing`, else already
  preprocessed as Keras' `preprocess_input` does (in [-1, 1]). Returns float32 logits
  [B, num_classes] (pooled features [B, int(1024 * alpha)] when headless), and with
  `return_features` a BackboneFeatures: the last map at each stride 2, 4, 8, 16 (each
  block's `conv_pw_{i}_relu` before a strided block) and 32 (the output), last_conv (the
  last block's `conv_pw_{i}_relu`) and pooled (the global average).

  Attributes:
    blocks: (pointwise filters, strides) of each depthwise-separable block (BLOCKS: Keras').
    alpha: Keras' width multiplier.
    dropout_rate: Keras' `dropout`, before `conv_preds`, in training only.
    trainable_blocks: with `train`, only the last N blocks (and the top) train; the stem and
      the blocks before them run in inference mode without gradient (None: all train).
  """

  blocks: tuple[tuple[int, int], ...] = BLOCKS
  alpha: float = 1.0
  num_classes: int | None = 1000
  include_preprocessing: bool = False
  dropout_rate: float = 1e-3
  trainable_blocks: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  def block_names(self) -> list[str]:
    """The units `trainable_blocks` counts, in network order (block i: `conv_*_{i}*`)."""
    return [f'block{i}' for i in range(1, len(self.blocks) + 1)]

  def _conv(self, features, kernel, strides=1, *, use_bias=False, name):
    return nn.Conv(features, (kernel, kernel), (strides, strides), padding='SAME',
                   use_bias=use_bias, kernel_init=keras_kernel_init, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=name)

  def _norm(self, train, *, name):
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPSILON, dtype=self.dtype, param_dtype=self.param_dtype,
                        axis_name=self.axis_name, use_fast_variance=False, name=name)

  def _block(self, x, filters, strides, train, index):
    if strides == 1:
      x = DepthwiseConv(3, 1, 'SAME', dtype=self.dtype, param_dtype=self.param_dtype,
                        name=f'conv_dw_{index}')(x)
    else:  # ZeroPadding2D(((0, 1), (0, 1))) + 'valid'
      x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
      x = DepthwiseConv(3, strides, 'VALID', dtype=self.dtype, param_dtype=self.param_dtype,
                        name=f'conv_dw_{index}')(x)
    x = relu6(self._norm(train, name=f'conv_dw_{index}_bn')(x))
    x = self._conv(int(filters * self.alpha), 1, name=f'conv_pw_{index}')(x)
    return relu6(self._norm(train, name=f'conv_pw_{index}_bn')(x))

  @nn.compact
  def __call__(self, images, *, train: bool = False, return_features: bool = False):
    if self.trainable_blocks is not None and self.trainable_blocks < 0:
      raise ValueError(f'trainable_blocks must be None or >= 0, got {self.trainable_blocks}')
    names = self.block_names()
    frozen = set()
    if self.trainable_blocks is not None:
      frozen = {'conv1'} | set(names[:max(len(names) - self.trainable_blocks, 0)])

    def trains(unit):
      return train and unit not in frozen

    def after(unit, x):  # nothing before a frozen unit trains: no gradient through it
      return lax.stop_gradient(x) if train and unit in frozen else x

    x = images
    if self.include_preprocessing:  # mode 'tf'
      x = x.astype(jnp.float32) / 127.5 - 1.0
    x = x.astype(self.dtype)
    x = self._conv(int(32 * self.alpha), 3, 2, name='conv1')(x)
    x = after('conv1', relu6(self._norm(trains('conv1'), name='conv1_bn')(x)))
    pyramid = []
    for index, (name, (filters, strides)) in enumerate(zip(names, self.blocks), start=1):
      if strides > 1:
        pyramid.append(x)  # the last map at this stride
      x = after(name, self._block(x, filters, strides, trains(name), index))
    x = mark_gradcam_map(self, x)
    pyramid.append(x)
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # GlobalAveragePooling2D
    output = pooled
    if self.num_classes is not None:
      y = ExampleDropout(self.dropout_rate, axis_name=self.axis_name)(
          pooled, deterministic=not train)
      y = self._conv(self.num_classes, 1, use_bias=True, name='conv_preds')(y[:, None, None])
      output = y.reshape(y.shape[0], self.num_classes).astype(jnp.float32)  # `reshape_2`
    if return_features:
      return output, BackboneFeatures(tuple(pyramid), x, pooled)
    return output


# For tests: 6 blocks at a quarter of the width (8 to 256 channels).
MobileNetTiny = partial(MobileNet, blocks=TINY_BLOCKS, alpha=0.25)
