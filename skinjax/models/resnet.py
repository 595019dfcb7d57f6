"""Keras' ResNet50 and ResNet50V2 (`keras.applications.ResNet50` / `ResNet50V2`), layer for
layer, for paper 1's and paper 2's comparison tables.

As keras.applications builds them (keras/src/applications/resnet.py, resnet_v2.py):
- Stem: ZeroPadding2D(3) + 7x7 stride-2 VALID convolution with a bias (`conv1_conv`); in
  V1 BatchNorm + ReLU after it, in V2 nothing (each V2 block normalises its own input);
  ZeroPadding2D(1) + 3x3 stride-2 VALID max pooling (`pool1_*`). The padding is zeros, as
  Keras pads, so a V2 max pool sees the zeros beside its (possibly negative) inputs.
- V1 block (`conv{s}_block{i}`): 1x1 (stride) -> 3x3 SAME -> 1x1 to 4x the width, each
  convolution with a bias and BatchNorm, ReLU between; the first block of a stage projects
  its shortcut (`_0_conv`, `_0_bn`); ReLU after the sum. Strides 1, 2, 2, 2 on the stages'
  first blocks (conv2 .. conv5), on the 1x1 convolution as Keras puts them.
- V2 block: BatchNorm + ReLU first (`_preact_*`), the projection shortcut (first block of
  a stage, from the normalised input) or the identity (max pooling of size 1 where it
  strides); 1x1 (no bias) -> ZeroPadding2D(1) + 3x3 VALID at the stride (no bias) -> 1x1 with
  a bias; no ReLU after the sum. A stage strides in its last block (1 in conv5), and the
  network ends with `post_bn` + `post_relu`.
- BatchNorm epsilon 1.001e-5, momentum 0.99; Glorot-uniform kernels, zero biases.
- Top: global average pooling (`avg_pool`) and Dense `predictions` (1000 classes); the
  logits are returned, Keras' softmax left out. `num_classes=None`: headless.
- `include_preprocessing` (off by default, as Keras' model has none): the family's own
  `preprocess_input` inside the model, for pixels in [0, 255]: V1 "caffe" (RGB -> BGR, minus
  the ImageNet BGR means), V2 "tf" (x / 127.5 - 1).

Module names are Keras' layer names, so that converted weights need no name table.
"""

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from skinjax.models.deepconvnet import keras_kernel_init
from skinjax.models.backbone_features import BackboneFeatures
from skinjax.models.gradcam_map import mark_gradcam_map

BN_EPSILON = 1.001e-5
BN_MOMENTUM = 0.99
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils, mode 'caffe'


def zero_pad(x, pad: int):
  """Keras ZeroPadding2D(pad) on NHWC."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


class ResNet(nn.Module):
  """`__call__(images, train=False, return_features=False)`.

  images: float[B, H, W, 3]; pixels in [0, 255] with `include_preprocessing`, else already
  preprocessed as Keras' `preprocess_input` does. Returns float32 logits [B, num_classes]
  (pooled features [B, 2048 / width_divisor] when headless), and with `return_features` a BackboneFeatures:
  the last map at each stride 2 (the stem convolution), 4, 8, 16 (before the blocks that
  stride: V1's first blocks, V2's last) and 32 (the output), last_conv (the stride-32 map, after `post_relu` in V2) and pooled (`avg_pool`).

  Attributes:
    stage_blocks: blocks per stage, conv2 .. conv5 ((3, 4, 6, 3) for the 50-layer nets).
    preact: False for ResNet50 (V1), True for ResNet50V2.
    width_divisor: every layer's filters divided by it (1: Keras' widths; the tiny variants
      for tests use 8).
    trainable_blocks: with `train`, only the last N blocks (and the top) train; the stem and
      the blocks before them run in inference mode without gradient (None: all train).
  """

  stage_blocks: tuple[int, ...] = (3, 4, 6, 3)
  preact: bool = False
  width_divisor: int = 1
  num_classes: int | None = 1000
  include_preprocessing: bool = False
  trainable_blocks: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  def block_names(self) -> list[str]:
    return [f'conv{stage}_block{i}' for stage, count in enumerate(self.stage_blocks, start=2)
            for i in range(1, count + 1)]

  def _conv(self, features, kernel, strides=1, *, padding='VALID', use_bias=True, name):
    return nn.Conv(features, (kernel, kernel), (strides, strides), padding=padding,
                   use_bias=use_bias, kernel_init=keras_kernel_init, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=name)

  def _norm(self, train, *, name):
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPSILON, dtype=self.dtype, param_dtype=self.param_dtype,
                        axis_name=self.axis_name, use_fast_variance=False, name=name)

  def _preprocess(self, images):
    x = images.astype(jnp.float32)
    if self.preact:  # mode 'tf'
      return x / 127.5 - 1.0
    return x[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN, jnp.float32)  # mode 'caffe'

  def _block_v1(self, x, filters, strides, project, train, name):
    shortcut = x
    if project:
      shortcut = self._conv(4 * filters, 1, strides, name=f'{name}_0_conv')(x)
      shortcut = self._norm(train, name=f'{name}_0_bn')(shortcut)
    x = self._conv(filters, 1, strides, name=f'{name}_1_conv')(x)
    x = nn.relu(self._norm(train, name=f'{name}_1_bn')(x))
    x = self._conv(filters, 3, padding='SAME', name=f'{name}_2_conv')(x)
    x = nn.relu(self._norm(train, name=f'{name}_2_bn')(x))
    x = self._conv(4 * filters, 1, name=f'{name}_3_conv')(x)
    x = self._norm(train, name=f'{name}_3_bn')(x)
    return nn.relu(shortcut + x)

  def _block_v2(self, x, filters, strides, project, train, name):
    preact = nn.relu(self._norm(train, name=f'{name}_preact_bn')(x))
    if project:
      shortcut = self._conv(4 * filters, 1, strides, name=f'{name}_0_conv')(preact)
    else:  # MaxPooling2D(1, strides): every strides-th pixel
      shortcut = x[:, ::strides, ::strides] if strides > 1 else x
    x = self._conv(filters, 1, use_bias=False, name=f'{name}_1_conv')(preact)
    x = nn.relu(self._norm(train, name=f'{name}_1_bn')(x))
    x = self._conv(filters, 3, strides, use_bias=False, name=f'{name}_2_conv')(zero_pad(x, 1))
    x = nn.relu(self._norm(train, name=f'{name}_2_bn')(x))
    x = self._conv(4 * filters, 1, name=f'{name}_3_conv')(x)
    return shortcut + x

  def _plan(self):
    """(name, filters, strides, projects) of each block, in network order."""
    plan = []
    for index, count in enumerate(self.stage_blocks):
      stage, filters = index + 2, 64 * 2**index // self.width_divisor
      for i in range(1, count + 1):
        if self.preact:  # V2: project in the first block, stride in the last (not conv5)
          strides = 2 if i == count and stage < 5 else 1
        else:  # V1: project and stride in the first (stride 1 in conv2)
          strides = 2 if i == 1 and stage > 2 else 1
        plan.append((f'conv{stage}_block{i}', filters, strides, i == 1))
    return plan

  @nn.compact
  def __call__(self, images, *, train: bool = False, return_features: bool = False):
    if self.trainable_blocks is not None and self.trainable_blocks < 0:
      raise ValueError(f'trainable_blocks must be None or >= 0, got {self.trainable_blocks}')
    plan = self._plan()
    frozen = set()
    if self.trainable_blocks is not None:
      frozen = {'conv1'} | {name for name, *_ in plan[:max(len(plan) - self.trainable_blocks, 0)]}

    def trains(unit):
      return train and unit not in frozen

    def after(unit, x):  # nothing before a frozen unit trains: no gradient through it
      return lax.stop_gradient(x) if train and unit in frozen else x

    x = self._preprocess(images) if self.include_preprocessing else images
    x = x.astype(self.dtype)
    x = self._conv(64 // self.width_divisor, 7, 2, name='conv1_conv')(zero_pad(x, 3))
    if not self.preact:
      x = nn.relu(self._norm(trains('conv1'), name='conv1_bn')(x))
    x = after('conv1', x)
    pyramid = [x]
    x = nn.max_pool(zero_pad(x, 1), (3, 3), (2, 2), padding='VALID')
    block = self._block_v2 if self.preact else self._block_v1
    for name, filters, strides, project in plan:
      if strides > 1:
        pyramid.append(x)  # the last map at this stride
      x = after(name, block(x, filters, strides, project, trains(name), name))
    if self.preact:
      x = nn.relu(self._norm(train, name='post_bn')(x))
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


ResNet50 = partial(ResNet, stage_blocks=(3, 4, 6, 3), preact=False)
ResNet50V2 = partial(ResNet, stage_blocks=(3, 4, 6, 3), preact=True)
# For tests: one block per stage at an eighth of the widths, the same layer kinds
# (projection, strides; V2's pooling shortcut needs two blocks in a stage, so V2's tiny
# variant has two).
ResNetTiny = partial(ResNet, stage_blocks=(1, 1, 1, 1), preact=False, width_divisor=8)
ResNetV2Tiny = partial(ResNet, stage_blocks=(2, 1, 1, 1), preact=True, width_divisor=8)
