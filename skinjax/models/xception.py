"""Keras' Xception (`keras.applications.Xception`), layer for layer, for paper 1's and paper
2's comparison tables.

As keras.applications builds it (keras/src/applications/xception.py):
- Entry flow: `block1_conv1` (32, 3x3, stride 2) and `block1_conv2` (64, 3x3), both VALID
  and without bias, each with BatchNorm + ReLU. Blocks 2, 3, 4 (128, 256, 728 filters):
  two SeparableConv2D 3x3 SAME without bias, each with BatchNorm, ReLU between (and before
  the first, except in block2), then a 3x3 stride-2 SAME max pool, plus a shortcut: a
  1x1 stride-2 convolution without bias and its BatchNorm, from the block's input.
- Middle flow: eight blocks (block5 .. block12) of three (ReLU -> SeparableConv2D 728 ->
  BatchNorm) on an identity shortcut.
- Exit flow: block13 as the entry blocks (728 then 1024 filters, 1024 on the shortcut),
  then block14: SeparableConv2D 1536 and 2048, each with BatchNorm + ReLU;
  `block14_sepconv2_act` is the last map (last_conv, Grad-CAM's).
- BatchNorm at Keras' defaults: epsilon 1e-3, momentum 0.99. Glorot-uniform kernels (both
  of a separable convolution's). Top: global average pooling (`avg_pool`) and Dense
  `predictions`; the logits are returned, Keras' softmax left out. `num_classes=None`:
  headless.
- `include_preprocessing` (off by default, as Keras' model has none): Keras' xception
  `preprocess_input` inside the model for pixels in [0, 255], mode "tf" (x / 127.5 - 1).

Module names are Keras' layer names, so that converted weights need no name table. Keras
leaves the four shortcut convolutions and their BatchNorms unnamed; they carry the names a
fresh Keras session gives them, in creation order (blocks 2, 3, 4, 13): `conv2d` ..
`conv2d_3`, `batch_normalization` .. `batch_normalization_3`. A file numbers them from its
session's counters; the converter renumbers them by rank (keras_applications.AUTO_NAMED_FAMILIES).
"""

from functools import partial
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from skinjax.models.backbone_features import BackboneFeatures
from skinjax.models.deepconvnet import keras_kernel_init
from skinjax.models.depthwise import depthwise_conv
from skinjax.models.gradcam_map import mark_gradcam_map

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99


class SeparableConv(nn.Module):
  """Keras SeparableConv2D (depth multiplier 1, stride 1, SAME, no bias): a depthwise
  convolution, then a 1x1 convolution. Params `depthwise_kernel` [k, k, C, 1] and
  `pointwise_kernel` [1, 1, C, features], Keras' shapes, both Glorot-uniform as Keras'."""

  features: int
  kernel_size: int = 3
  kernel_init: Callable[..., Any] = keras_kernel_init
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    depthwise = self.param('depthwise_kernel', self.kernel_init,
                           (self.kernel_size, self.kernel_size, channels, 1), self.param_dtype)
    pointwise = self.param('pointwise_kernel', self.kernel_init,
                           (1, 1, channels, self.features), self.param_dtype)
    x, depthwise, pointwise = nn.dtypes.promote_dtype(x, depthwise, pointwise,
                                                      dtype=self.dtype)
    x = depthwise_conv(x, depthwise, 1, padding='SAME')
    return lax.dot_general(x, pointwise[0, 0], (((3,), (0,)), ((), ())))


class Xception(nn.Module):
  """`__call__(images, train=False, return_features=False)`.

  images: float[B, H, W, 3], H and W >= 71; pixels in [0, 255] with
  `include_preprocessing`, else already preprocessed as Keras' `preprocess_input` does.
  Returns float32 logits [B, num_classes] (pooled features [B, 2048] when headless), and
  with `return_features` a BackboneFeatures: the last map at each stride 2
  (`block1_conv2_act`), 4, 8 (blocks 2 and 3), 16 (the middle flow's output) and 32
  (`block14_sepconv2_act`, also last_conv), and pooled (`avg_pool`).

  Attributes:
    stem_filters: block1_conv1's and block1_conv2's filters.
    entry_filters: blocks 2, 3, 4; the last is the middle flow's width.
    middle_blocks: identity blocks in the middle flow (block5 on).
    exit_filters: the exit block's second separable convolution (and shortcut), then
      block14's two.
    trainable_blocks: with `train`, only the last N blocks (block2 on) and the top train;
      block1 and the blocks before them run in inference mode without gradient (None: all
      train).
  """

  stem_filters: tuple[int, int] = (32, 64)
  entry_filters: tuple[int, int, int] = (128, 256, 728)
  middle_blocks: int = 8
  exit_filters: tuple[int, int, int] = (1024, 1536, 2048)
  num_classes: int | None = 1000
  include_preprocessing: bool = False
  trainable_blocks: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  def _conv(self, features, kernel, strides=1, *, padding='VALID', name):
    return nn.Conv(features, (kernel, kernel), (strides, strides), padding=padding,
                   use_bias=False, kernel_init=keras_kernel_init, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=name)

  def _sepconv(self, features, *, name):
    return SeparableConv(features, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  def _norm(self, train, *, name):
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPSILON, dtype=self.dtype, param_dtype=self.param_dtype,
                        axis_name=self.axis_name, use_fast_variance=False, name=name)

  def _pooled_block(self, x, filters, train, name, shortcut, *, first_relu=True):
    """Entry and exit blocks: two separable convolutions, a stride-2 max pool, and a 1x1
    stride-2 shortcut. filters: (first, second) convolution widths; shortcut: the block's
    rank among those with a shortcut (0 .. 3), which numbers Keras' auto names."""
    suffix = f'_{shortcut}' if shortcut else ''
    residual = self._conv(filters[1], 1, 2, padding='SAME', name=f'conv2d{suffix}')(x)
    residual = self._norm(train, name=f'batch_normalization{suffix}')(residual)
    if first_relu:  # `{name}_sepconv1_act`; block2 follows block1's own ReLU
      x = nn.relu(x)
    x = self._sepconv(filters[0], name=f'{name}_sepconv1')(x)
    x = nn.relu(self._norm(train, name=f'{name}_sepconv1_bn')(x))
    x = self._sepconv(filters[1], name=f'{name}_sepconv2')(x)
    x = self._norm(train, name=f'{name}_sepconv2_bn')(x)
    x = nn.max_pool(x, (3, 3), (2, 2), padding='SAME')  # `{name}_pool`
    return x + residual

  def _middle_block(self, x, train, name):
    residual = x
    for i in (1, 2, 3):
      x = self._sepconv(x.shape[-1], name=f'{name}_sepconv{i}')(nn.relu(x))
      x = self._norm(train, name=f'{name}_sepconv{i}_bn')(x)
    return x + residual

  def block_names(self) -> list[str]:
    return [f'block{i}' for i in range(1, self.middle_blocks + 7)]

  @nn.compact
  def __call__(self, images, *, train: bool = False, return_features: bool = False):
    if self.trainable_blocks is not None and self.trainable_blocks < 0:
      raise ValueError(f'trainable_blocks must be None or >= 0, got {self.trainable_blocks}')
    names = self.block_names()
    frozen = set()
    if self.trainable_blocks is not None:  # block1 is the stem: frozen with any N
      blocks = names[1:]
      frozen = {names[0]} | set(blocks[:max(len(blocks) - self.trainable_blocks, 0)])

    def trains(unit):
      return train and unit not in frozen

    def after(unit, x):  # nothing before a frozen unit trains: no gradient through it
      return lax.stop_gradient(x) if train and unit in frozen else x

    x = images
    if self.include_preprocessing:  # mode 'tf'
      x = images.astype(jnp.float32) / 127.5 - 1.0
    x = x.astype(self.dtype)
    x = self._conv(self.stem_filters[0], 3, 2, name='block1_conv1')(x)
    x = nn.relu(self._norm(trains('block1'), name='block1_conv1_bn')(x))
    x = self._conv(self.stem_filters[1], 3, name='block1_conv2')(x)
    x = after('block1', nn.relu(self._norm(trains('block1'), name='block1_conv2_bn')(x)))
    pyramid = [x]
    for index, filters in enumerate(self.entry_filters, start=2):
      name = f'block{index}'
      x = after(name, self._pooled_block(x, (filters, filters), trains(name), name, index - 2,
                                         first_relu=index > 2))
      pyramid.append(x)
    pyramid.pop()  # block4's output is at stride 16; the middle flow's is the last there
    for name in names[4:-2]:
      x = after(name, self._middle_block(x, trains(name), name))
    pyramid.append(x)
    exit_name, top_name = names[-2:]
    x = after(exit_name, self._pooled_block(x, (self.entry_filters[-1], self.exit_filters[0]),
                                            trains(exit_name), exit_name, 3))
    for i, filters in enumerate(self.exit_filters[1:], start=1):
      x = self._sepconv(filters, name=f'{top_name}_sepconv{i}')(x)
      x = nn.relu(self._norm(trains(top_name), name=f'{top_name}_sepconv{i}_bn')(x))
    x = mark_gradcam_map(self, after(top_name, x))  # `block14_sepconv2_act`
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


# For tests: every kind of layer (stem, three entry blocks, one middle block, the exit
# blocks) at 8 to 64 channels.
XceptionTiny = partial(Xception, stem_filters=(8, 16), entry_filters=(16, 32, 32),
                       middle_blocks=1, exit_filters=(48, 48, 64))
