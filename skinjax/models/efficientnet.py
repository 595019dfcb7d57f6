"""Keras' EfficientNetB3 (`keras.applications.EfficientNetB3`, the original EfficientNet, not
V2), layer for layer, for the papers' comparison tables.

As keras.applications builds it (keras/src/applications/efficientnet.py):
- Input: Rescaling(1/255), then a Normalization layer, (x - mean) / max(sqrt(variance),
  1e-7), whose mean, variance (and an unused count) are non-trainable variables. Keras
  always builds both; with weights=None the statistics are 0 and 1 (the identity), a
  saved file carries whatever its model held. They live here in 'batch_stats' under
  `normalization` (mean, variance: float32[3]; count: int32[]), so that parameter counts
  equal Keras' and a converted file's statistics are the ones used; training never changes
  them. Keras' `preprocess_input` is a pass-through for this family, so the model takes
  pixels in [0, 255] and `include_preprocessing` changes nothing (it is accepted so that
  every family has the option).
- `imagenet_rescaling` (off by default): with weights='imagenet' Keras adds one more
  layer, Rescaling(1 / sqrt(stddev)) per channel after the Normalization (the ImageNet
  file's variance holds the standard deviation, see tensorflow/tensorflow#49930). Set it
  for weights converted from Keras' ImageNet files (or from a model Keras built with
  weights='imagenet'); a Keras model built with weights=None, and files saved from it,
  have no such layer.
- One block table (Keras' DEFAULT_BLOCKS_ARGS) scaled per variant: filters ->
  max(8, int(f * width + 4) // 8 * 8), plus 8 where that lost more than 10%;
  repeats -> ceil(depth * r). B3: width 1.2, depth 1.4, 26 blocks, stem 40, top 1536.
- Stem: ZeroPadding2D(correct_pad) + 3x3 stride-2 VALID conv (`stem_conv`), BatchNorm,
  swish. Block (`block{stage}{letter}_`): 1x1 expand (not where the ratio is 1), BatchNorm,
  swish; kxk depthwise, stride 2 as ZeroPadding2D(correct_pad) + 'valid', else 'same';
  BatchNorm, swish; squeeze-excite (global mean -> 1x1 conv with bias to int(block input *
  0.25), swish -> 1x1 conv with bias, sigmoid -> rescale); 1x1 project, BatchNorm; the
  input added back at stride 1 when widths agree. correct_pad pads (k//2 - 1, k//2) along
  an even axis, (k//2, k//2) along an odd one, from the static shape (a Keras model
  built for unknown sizes would always pad as for even ones).
- Drop connect: Keras' Dropout(drop_connect_rate * b / blocks, noise_shape (B, 1, 1, 1))
  before the add, b counting the scaled blocks from 0 and `blocks` their number (unlike
  EfficientNetV2, whose `blocks` is the unscaled count), so B3's last residual block
  (b = 24) drops whole examples' branches with rate 0.2 * 24 / 26, block1a none; active
  only in training, as Keras' Dropout.
- Top: 1x1 `top_conv`, `top_bn`, swish (`top_activation`: the last conv map); with a top,
  global average (`avg_pool`), Dropout(0.3 in B3) and Dense `predictions`; logits are
  returned (Keras' softmax left out). num_classes=None: headless (Keras pooling='avg').
- BatchNorm: Keras' defaults, momentum 0.99, epsilon 1e-3. Initialisers: Keras'
  CONV_KERNEL_INITIALIZER (VarianceScaling(2, fan_out, truncated normal)) for every
  convolution, the depthwise included; DENSE_KERNEL_INITIALIZER for `predictions`; zero
  biases.

Every Keras layer with weights is a direct child module named as Keras names it
(`block2a_expand_conv`, `block2a_dwconv`, `block2a_se_reduce`), so that converted weights
need no name table (skinjax/convert/keras_applications.py, which also places the
`normalization` statistics).
"""

import dataclasses
import math
from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from skinjax.models.backbone_features import BackboneFeatures
from skinjax.models.dropout import ExampleDropout
from skinjax.models.efficientnet_v2 import DepthwiseConv, conv_kernel_init, dense_kernel_init
from skinjax.models.gradcam_map import mark_gradcam_map

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
NORMALIZATION_EPSILON = 1e-7  # keras.backend.epsilon(), Normalization's floor on sqrt(var)
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)  # keras efficientnet.IMAGENET_STDDEV_RGB


@dataclasses.dataclass(frozen=True)
class Stage:
  """One row of Keras' DEFAULT_BLOCKS_ARGS, before width/depth scaling."""

  kernel_size: int
  repeats: int
  filters_in: int
  filters_out: int
  expand_ratio: int
  strides: int
  se_ratio: float = 0.25
  id_skip: bool = True


STAGES = (
    Stage(3, 1, 32, 16, 1, 1),
    Stage(3, 2, 16, 24, 6, 2),
    Stage(5, 2, 24, 40, 6, 2),
    Stage(3, 3, 40, 80, 6, 2),
    Stage(5, 3, 80, 112, 6, 1),
    Stage(5, 4, 112, 192, 6, 2),
    Stage(3, 1, 192, 320, 6, 1),
)


@dataclasses.dataclass(frozen=True)
class Block:
  """One scaled block: its Keras name prefix ('block2a') and what its layers need."""

  name: str
  kernel_size: int
  strides: int
  filters_in: int
  filters_out: int
  expand_ratio: int
  se_ratio: float
  id_skip: bool
  drop_rate: float

  @property
  def has_residual(self) -> bool:
    return self.id_skip and self.strides == 1 and self.filters_in == self.filters_out


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """Keras' round_filters: scale by `width`, round to a multiple of `divisor`, never more
  than 10% down."""
  filters *= width
  new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
  if new_filters < 0.9 * filters:
    new_filters += divisor
  return int(new_filters)


def round_repeats(repeats: int, depth: float) -> int:
  """Keras' round_repeats: ceil(depth * repeats)."""
  return int(math.ceil(depth * repeats))


def block_plan(stages, width: float, depth: float,
               drop_connect_rate: float = 0.2) -> tuple[Block, ...]:
  """The scaled blocks in network order, named and with drop rates as Keras computes them."""
  stages = tuple(stages)
  for i, stage in enumerate(stages):
    if stage.repeats <= 0:
      raise ValueError(f'stage {i + 1} of the block table has repeats {stage.repeats}; '
                       'expected > 0')
  total = float(sum(round_repeats(stage.repeats, depth) for stage in stages))
  blocks, b = [], 0
  for i, stage in enumerate(stages):
    filters_in = round_filters(stage.filters_in, width)
    filters_out = round_filters(stage.filters_out, width)
    for j in range(round_repeats(stage.repeats, depth)):
      blocks.append(Block(
          name=f'block{i + 1}{chr(j + 97)}', kernel_size=stage.kernel_size,
          strides=stage.strides if j == 0 else 1,
          filters_in=filters_in if j == 0 else filters_out, filters_out=filters_out,
          expand_ratio=stage.expand_ratio, se_ratio=stage.se_ratio, id_skip=stage.id_skip,
          drop_rate=drop_connect_rate * b / total))
      b += 1
  return tuple(blocks)


def correct_pad(x, kernel_size: int):
  """Keras' ZeroPadding2D(imagenet_utils.correct_pad(x, k)) on NHWC with a static shape."""
  pads = [(k // 2 - (1 - size % 2), k // 2)
          for size, k in zip(x.shape[1:3], (kernel_size, kernel_size))]
  return jnp.pad(x, ((0, 0), *pads, (0, 0)))


class Normalization(nn.Module):
  """Keras' Normalization layer (axis -1) with its statistics as non-trainable variables in
  'batch_stats': (x - mean) / max(sqrt(variance), 1e-7), in float32. `count` is kept
  because Keras stores and counts it; nothing reads it."""

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    mean = self.variable('batch_stats', 'mean', jnp.zeros, (channels,), jnp.float32)
    variance = self.variable('batch_stats', 'variance', jnp.ones, (channels,), jnp.float32)
    self.variable('batch_stats', 'count', jnp.zeros, (), jnp.int32)
    std = jnp.maximum(jnp.sqrt(variance.value.astype(jnp.float32)), NORMALIZATION_EPSILON)
    return (x - mean.value.astype(jnp.float32)) / std


class EfficientNet(nn.Module):
  """`__call__(images, train=False, return_features=False)`.

  images: float[B, H, W, 3], pixels in [0, 255] (Keras' Rescaling and Normalization are
  part of the network; see the module docstring). Returns float32 logits [B, num_classes]
  (float32 pooled features [B, top filters] when headless), and with `return_features` a
  BackboneFeatures: the last map at each stride 2, 4, 8, 16 (before the blocks that
  stride) and 32 (the top activation), last_conv (`top_activation`) and pooled (`avg_pool`).

  Attributes:
    width, depth: Keras' width and depth coefficients (B3: 1.2, 1.4).
    stages: the unscaled block table (Keras' DEFAULT_BLOCKS_ARGS).
    dropout_rate: Keras' `top_dropout` before `predictions` (B3: 0.3).
    drop_connect_rate: stochastic-depth scale (0.2; see the module docstring).
    include_preprocessing: Keras' preprocess_input inside the model, a pass-through for
      EfficientNet: True and False build the same network.
    imagenet_rescaling: Keras' extra Rescaling(1 / sqrt(stddev)) of weights='imagenet'.
    trainable_blocks: with `train`, only the last N blocks (and the top) train; the stem
      and the blocks before them run in inference mode without gradient (None: all train).
  """

  width: float = 1.2
  depth: float = 1.4
  stages: tuple[Stage, ...] = STAGES
  dropout_rate: float = 0.3
  drop_connect_rate: float = 0.2
  num_classes: int | None = 1000
  include_preprocessing: bool = False
  imagenet_rescaling: bool = False
  trainable_blocks: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  @property
  def blocks(self) -> tuple[Block, ...]:
    return block_plan(self.stages, self.width, self.depth, self.drop_connect_rate)

  def block_names(self) -> list[str]:
    return [block.name for block in self.blocks]

  def _conv(self, features, kernel, strides=1, *, padding='SAME', use_bias=False, name):
    return nn.Conv(features, (kernel, kernel), (strides, strides), padding=padding,
                   use_bias=use_bias, kernel_init=conv_kernel_init, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=name)

  def _norm(self, train, *, name):
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPSILON, dtype=self.dtype, param_dtype=self.param_dtype,
                        axis_name=self.axis_name, use_fast_variance=False, name=name)

  def _block(self, inputs, block: Block, train: bool):
    name = block.name
    filters = block.filters_in * block.expand_ratio
    x = inputs
    if block.expand_ratio != 1:
      x = self._conv(filters, 1, name=f'{name}_expand_conv')(x)
      x = nn.silu(self._norm(train, name=f'{name}_expand_bn')(x))
    padding = 'SAME'
    if block.strides == 2:
      x, padding = correct_pad(x, block.kernel_size), 'VALID'
    x = DepthwiseConv(block.kernel_size, block.strides, padding, dtype=self.dtype,
                      param_dtype=self.param_dtype, name=f'{name}_dwconv')(x)
    x = nn.silu(self._norm(train, name=f'{name}_bn')(x))
    if 0 < block.se_ratio <= 1:
      filters_se = max(1, int(block.filters_in * block.se_ratio))
      se = jnp.mean(x, axis=(1, 2), keepdims=True)  # se_squeeze + se_reshape
      se = nn.silu(self._conv(filters_se, 1, use_bias=True, name=f'{name}_se_reduce')(se))
      se = nn.sigmoid(self._conv(filters, 1, use_bias=True, name=f'{name}_se_expand')(se))
      x = x * se
    x = self._conv(block.filters_out, 1, name=f'{name}_project_conv')(x)
    x = self._norm(train, name=f'{name}_project_bn')(x)
    if not block.has_residual:
      return x
    if block.drop_rate > 0:  # Keras' `{name}_drop`: whole examples' branches
      x = ExampleDropout(block.drop_rate, broadcast_dims=(1, 2, 3), axis_name=self.axis_name,
                         name=f'{name}_drop')(x, deterministic=not train)
    return x + inputs

  def _preprocess(self, images):
    """Keras' Rescaling(1/255) and Normalization (and the ImageNet Rescaling), in float32."""
    x = images.astype(jnp.float32) * jnp.float32(1.0 / 255.0)
    x = Normalization(name='normalization')(x)
    if self.imagenet_rescaling:
      x = x * jnp.asarray([1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB], jnp.float32)
    return x

  @nn.compact
  def __call__(self, images, *, train: bool = False, return_features: bool = False):
    if self.trainable_blocks is not None and self.trainable_blocks < 0:
      raise ValueError(f'trainable_blocks must be None or >= 0, got {self.trainable_blocks}')
    blocks = self.blocks
    frozen = set()
    if self.trainable_blocks is not None:
      frozen = {'stem'} | {b.name for b in blocks[:max(len(blocks) - self.trainable_blocks, 0)]}

    def trains(unit):
      return train and unit not in frozen

    def after(unit, x):  # nothing before a frozen unit trains: no gradient through it
      return lax.stop_gradient(x) if train and unit in frozen else x

    # preprocess_input is a pass-through here, so include_preprocessing has nothing to add.
    x = self._preprocess(images).astype(self.dtype)
    x = self._conv(round_filters(self.stages[0].filters_in, self.width), 3, 2,
                   padding='VALID', name='stem_conv')(correct_pad(x, 3))
    x = after('stem', nn.silu(self._norm(trains('stem'), name='stem_bn')(x)))
    pyramid = []
    for block in blocks:
      if block.strides > 1:
        pyramid.append(x)  # the last map at this stride
      x = after(block.name, self._block(x, block, trains(block.name)))
    x = self._conv(round_filters(1280, self.width), 1, name='top_conv')(x)
    x = nn.silu(self._norm(train, name='top_bn')(x))
    x = mark_gradcam_map(self, x)
    pyramid.append(x)
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # Keras `avg_pool`
    output = pooled
    if self.num_classes is not None:
      y = pooled
      if self.dropout_rate > 0:
        y = ExampleDropout(self.dropout_rate, axis_name=self.axis_name,
                           name='top_dropout')(pooled, deterministic=not train)
      output = nn.Dense(self.num_classes, kernel_init=dense_kernel_init, dtype=self.dtype,
                        param_dtype=self.param_dtype, name='predictions')(y).astype(jnp.float32)
    if return_features:
      return output, BackboneFeatures(tuple(pyramid), x, pooled)
    return output


EfficientNetB3 = partial(EfficientNet, width=1.2, depth=1.4, dropout_rate=0.3)
# For tests: Keras' builder at width 0.25, depth 0.3 (EfficientNet(0.25, 0.3, ...)): 8
# blocks (one per stage, two in stage 6, whose second is a residual block with drop
# connect), 8 to 80 channels, top 320; every kind of layer of B3 (no expansion in block1a,
# 3x3 and 5x5 depthwise at both strides, squeeze-excite, residuals).
EfficientNetTiny = partial(EfficientNet, width=0.25, depth=0.3, dropout_rate=0.3)
DEFAULT_SIZE = 300  # Keras' default input for B3
