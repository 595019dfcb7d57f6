"""EfficientNetV2 B0..B3, built as `keras.applications.efficientnet_v2` builds them.

Facts taken from Keras 3.15's `applications/efficientnet_v2.py` (code written here):
- One block table (`B_STAGES`, Keras' DEFAULT_BLOCKS_ARGS for b0..b3) scaled per variant:
  filters -> max(8, int(f * width + 4) // 8 * 8), repeats -> ceil(depth * r).
- Stem: 3x3 stride-2 conv -> BatchNorm -> swish. Top: 1x1 conv to round(1280) -> BatchNorm
  -> swish; with a top, global average pool -> dropout 0.2 -> dense (`predictions`).
- Fused-MBConv (stages 1-3): a kxk expand conv carries the stride (or, with expand ratio
  1, the kxk project conv does, followed by swish). MBConv (stages 4-6): 1x1 expand ->
  depthwise kxk -> squeeze-excite (reduce to int(block input * 0.25) channels) -> 1x1
  project. A block adds its input back when stride is 1 and widths agree.
- Stochastic depth: Keras passes `0.2 * b / blocks` as the Dropout rate (per example,
  noise shape (B, 1, 1, 1)), where b counts the scaled blocks from 0 but `blocks` is the
  sum of the *unscaled* repeats (21 for the B variants). So B3's last block (b = 31) drops
  with rate 0.295, not 0.2 * 31 / 32; we keep Keras' arithmetic. Block b = 0 has none.
- BatchNorm: momentum 0.9, epsilon 1e-3, two-pass variance (Keras' tf.nn.moments).
- Initialisers: convolutions VarianceScaling(2, fan_out, truncated normal), the depthwise
  kernel included with Keras' own fan_out (kh * kw * 1); dense VarianceScaling(1/3,
  fan_out, uniform); biases zero.
- `include_preprocessing` (B variants): x / 255, then (x - ImageNet mean) / ImageNet std,
  computed as Keras' Rescaling and Normalization layers do it in float32.
- Padding 'SAME' is TensorFlow's: a stride-2 conv on an even size pads one more row and
  column at the bottom and right. Flax's 'SAME' is the same rule (lax.padtype_to_pads).

Layer names are Keras' layer names split at the block prefix: Keras `block4a_expand_conv`
is `params['block4a']['expand_conv']` here, `stem_bn` is `params['stem_bn']`, so weight
conversion is a rename (skinjax/convert/keras_efficientnet_v2.py).
"""

import dataclasses
import math
import re
from functools import partial
from typing import Any, Iterable

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from skinjax.models.backbone_features import BackboneFeatures
from skinjax.models.depthwise import DepthwiseConv as KerasDepthwiseConv
from skinjax.models.dropout import ExampleDropout
from skinjax.models.gradcam_map import mark_gradcam_map

# Keras' CONV_KERNEL_INITIALIZER and DENSE_KERNEL_INITIALIZER.
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'truncated_normal')
dense_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_out', 'uniform')

# Keras' B-variant preprocessing: ImageNet mean and variance (Normalization layer).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_VARIANCE = (0.229**2, 0.224**2, 0.225**2)


# EfficientNetV2's depthwise layers initialise as its other convolutions (fan_out).
DepthwiseConv = partial(KerasDepthwiseConv, kernel_init=conv_kernel_init)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One row of the block table before width/depth scaling (Keras DEFAULT_BLOCKS_ARGS)."""

  kernel_size: int
  num_repeat: int
  input_filters: int
  output_filters: int
  expand_ratio: int
  se_ratio: float
  strides: int
  fused: bool  # Keras conv_type 1


# Keras' table for efficientnetv2-b0, -b1, -b2 and -b3 (identical for the four).
B_STAGES = (
    Stage(3, 1, 32, 16, 1, 0.0, 1, fused=True),
    Stage(3, 2, 16, 32, 4, 0.0, 2, fused=True),
    Stage(3, 2, 32, 48, 4, 0.0, 2, fused=True),
    Stage(3, 3, 48, 96, 4, 0.25, 2, fused=False),
    Stage(3, 5, 96, 112, 6, 0.25, 1, fused=False),
    Stage(3, 8, 112, 192, 6, 0.25, 2, fused=False),
)


@dataclasses.dataclass(frozen=True)
class Block:
  """One scaled block: its Keras name prefix ('block4a') and what its layers need."""

  name: str
  fused: bool
  kernel_size: int
  strides: int
  input_filters: int
  output_filters: int
  expand_ratio: int
  se_ratio: float
  drop_rate: float

  @property
  def has_residual(self) -> bool:
    return self.strides == 1 and self.input_filters == self.output_filters


def round_filters(filters: int, width: float, divisor: int = 8, min_depth: int = 8) -> int:
  """Keras' round_filters: scale by `width`, round to a multiple of `divisor`."""
  filters *= width
  return int(max(min_depth, int(filters + divisor / 2) // divisor * divisor))


def round_repeats(repeats: int, depth: float) -> int:
  """Keras' round_repeats: ceil(depth * repeats), in that float order."""
  return int(math.ceil(depth * repeats))


def block_plan(stages: Iterable[Stage], width: float, depth: float,
               drop_connect_rate: float = 0.2) -> tuple[Block, ...]:
  """The scaled blocks in network order, named and with drop rates as Keras computes them."""
  stages = tuple(stages)
  unscaled_blocks = float(sum(stage.num_repeat for stage in stages))
  blocks, b = [], 0
  for i, stage in enumerate(stages):
    if stage.num_repeat <= 0:
      raise ValueError(f'stage {i + 1} of the block table has num_repeat '
                       f'{stage.num_repeat}; expected > 0')
    input_filters = round_filters(stage.input_filters, width)
    output_filters = round_filters(stage.output_filters, width)
    for j in range(round_repeats(stage.num_repeat, depth)):
      blocks.append(Block(
          name=f'block{i + 1}{chr(ord("a") + j)}', fused=stage.fused,
          kernel_size=stage.kernel_size, strides=stage.strides if j == 0 else 1,
          input_filters=input_filters if j == 0 else output_filters,
          output_filters=output_filters, expand_ratio=stage.expand_ratio,
          se_ratio=stage.se_ratio, drop_rate=drop_connect_rate * b / unscaled_blocks))
      b += 1
  return tuple(blocks)


_BLOCK_NAME = re.compile(r'^block(\d+)([a-z])$')


def frozen_layers(layer_names: Iterable[str], trainable_blocks: int | None) -> set[str]:
  """Top-level layer names that stay frozen when only the last `trainable_blocks` train.

  The units, in network order, are the stem (`stem_*`), the blocks (`block1a`...) and the
  top (`top_*`, `predictions`). `None` freezes nothing; N freezes the stem and every
  block but the last N; the top always trains.
  """
  names = list(layer_names)
  if trainable_blocks is None:
    return set()
  if trainable_blocks < 0:
    raise ValueError(f'trainable_blocks must be None or >= 0, got {trainable_blocks}')
  blocks = sorted((n for n in names if _BLOCK_NAME.match(n)),
                  key=lambda n: (int(_BLOCK_NAME.match(n)[1]), _BLOCK_NAME.match(n)[2]))
  frozen_blocks = blocks[:max(len(blocks) - trainable_blocks, 0)]
  return {n for n in names if n.startswith('stem_')} | set(frozen_blocks)


@dataclasses.dataclass(frozen=True)
class Layers:
  """Builds the network's convolutions and BatchNorms with its dtypes and Keras settings.

  Called inside a compact method, the layers it builds belong to that module.
  """

  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-3

  def conv(self, features, kernel_size, strides=1, *, name, use_bias=False):
    return nn.Conv(features, (kernel_size, kernel_size), (strides, strides), padding='SAME',
                   use_bias=use_bias, kernel_init=conv_kernel_init, dtype=self.dtype,
                   param_dtype=self.param_dtype, name=name)

  def norm(self, train, *, name):
    return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                        epsilon=self.bn_epsilon, dtype=self.dtype, param_dtype=self.param_dtype,
                        axis_name=self.axis_name, use_fast_variance=False, name=name)


def squeeze_excite(layers: Layers, block: Block, x):
  """Keras' SE: mean over space -> 1x1 conv (swish) -> 1x1 conv (sigmoid) -> rescale x."""
  if not 0 < block.se_ratio <= 1:
    return x
  filters_se = max(1, int(block.input_filters * block.se_ratio))
  se = jnp.mean(x, axis=(1, 2), keepdims=True)
  se = nn.silu(layers.conv(filters_se, 1, name='se_reduce', use_bias=True)(se))
  se = nn.sigmoid(layers.conv(x.shape[-1], 1, name='se_expand', use_bias=True)(se))
  return x * se


def residual(layers: Layers, block: Block, x, inputs, train: bool):
  """Adds the block input back when shapes allow, after Keras' per-example drop."""
  if not block.has_residual:
    return x
  if block.drop_rate:
    # Stochastic depth: Keras Dropout with noise_shape (B, 1, 1, 1).
    x = ExampleDropout(block.drop_rate, broadcast_dims=(1, 2, 3), axis_name=layers.axis_name)(
        x, deterministic=not train)
  return x + inputs


class MBConvBlock(nn.Module):
  """Keras' FusedMBConvBlock (`block.fused`) or MBConvBlock: [B, H, W, C_in] -> [B, H', W', C_out].

  Fused: kxk expand conv (carrying the stride) [-> squeeze-excite] -> 1x1 project; with
  expand ratio 1 the project conv is the kxk strided one and is followed by swish.
  MBConv: 1x1 expand -> depthwise kxk (the stride) -> squeeze-excite -> 1x1 project.
  """

  block: Block
  layers: Layers

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    block, layers = self.block, self.layers
    expanded = block.expand_ratio != 1
    x = inputs
    if expanded:
      kernel, strides = (block.kernel_size, block.strides) if block.fused else (1, 1)
      x = layers.conv(block.input_filters * block.expand_ratio, kernel, strides,
                      name='expand_conv')(x)
      x = nn.silu(layers.norm(train, name='expand_bn')(x))
    if not block.fused:
      x = DepthwiseConv(block.kernel_size, block.strides, dtype=layers.dtype,
                        param_dtype=layers.param_dtype, name='dwconv2')(x)
      x = nn.silu(layers.norm(train, name='bn')(x))
    x = squeeze_excite(layers, block, x)
    fused_project = block.fused and not expanded
    x = layers.conv(block.output_filters, block.kernel_size if fused_project else 1,
                    block.strides if fused_project else 1, name='project_conv')(x)
    x = layers.norm(train, name='project_bn')(x)
    if fused_project:
      x = nn.silu(x)
    return residual(layers, block, x, inputs, train)


class EfficientNetV2(nn.Module):
  """EfficientNetV2 over a block table; the named variants below are partials.

  `__call__(images, train=False, return_features=False)`:
    images: float[B, H, W, 3], pixels in [0, 255] with `include_preprocessing` (Keras'
      default), else already normalised.
    returns float32 logits[B, num_classes], or float32 pooled features[B, top filters]
      when `num_classes` is None (Keras include_top=False, pooling='avg'); with
      `return_features` also a BackboneFeatures (pyramid, last_conv, pooled).

  Attributes:
    width, depth: Keras' width and depth coefficients.
    stages: the unscaled block table.
    num_classes: classes of the `predictions` top; None builds no top.
    include_preprocessing: apply Keras' B-variant rescaling and ImageNet normalisation.
    dropout_rate: dropout before `predictions` (0.2).
    drop_connect_rate: stochastic-depth scale (0.2; see the module docstring).
    trainable_blocks: with `train=True`, only the last N blocks and the top run in
      training mode (BatchNorm batch statistics, stochastic depth) and pass gradients;
      the stem and earlier blocks run in inference mode, as Keras runs layers with
      trainable=False. None: the whole network trains.
    axis_name: pmap axis, so BatchNorm statistics span all devices.
  """

  width: float
  depth: float
  stages: tuple[Stage, ...] = B_STAGES
  num_classes: int | None = 1000
  include_preprocessing: bool = True
  dropout_rate: float = 0.2
  drop_connect_rate: float = 0.2
  trainable_blocks: int | None = None
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  @property
  def blocks(self) -> tuple[Block, ...]:
    return block_plan(self.stages, self.width, self.depth, self.drop_connect_rate)

  @property
  def top_filters(self) -> int:
    return round_filters(1280, self.width)

  @nn.compact
  def __call__(self, images, *, train: bool = False, return_features: bool = False):
    blocks = self.blocks
    layers = Layers(self.dtype, self.param_dtype, self.axis_name, self.bn_momentum,
                    self.bn_epsilon)
    frozen = frozen_layers(['stem_conv'] + [b.name for b in blocks], self.trainable_blocks)

    def trains(unit):
      return train and unit not in frozen

    def after(unit, x):
      # Nothing before a frozen unit trains, so no gradient needs to flow back through it.
      return lax.stop_gradient(x) if train and unit in frozen else x

    x = images
    if self.include_preprocessing:
      # Rescaling(1/255) then Normalization, in float32 as Keras computes them.
      x = x.astype(jnp.float32) * jnp.float32(1.0 / 255)
      std = jnp.maximum(jnp.sqrt(jnp.asarray(IMAGENET_VARIANCE, jnp.float32)), 1e-7)
      x = (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / std
    x = x.astype(self.dtype)
    x = layers.conv(round_filters(self.stages[0].input_filters, self.width), 3, 2,
                    name='stem_conv')(x)
    x = after('stem_conv', nn.silu(layers.norm(trains('stem_conv'), name='stem_bn')(x)))
    pyramid = []
    for block in blocks:
      if block.strides > 1:
        pyramid.append(x)
      x = after(block.name,
                MBConvBlock(block, layers, name=block.name)(x, train=trains(block.name)))
    x = layers.conv(self.top_filters, 1, name='top_conv')(x)
    x = nn.silu(layers.norm(train, name='top_bn')(x))
    x = mark_gradcam_map(self, x)
    pyramid.append(x)
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # Keras `avg_pool`
    output = pooled
    if self.num_classes is not None:
      y = ExampleDropout(self.dropout_rate, axis_name=self.axis_name)(
          pooled, deterministic=not train)
      output = nn.Dense(self.num_classes, kernel_init=dense_kernel_init, dtype=self.dtype,
                        param_dtype=self.param_dtype, name='predictions')(y).astype(jnp.float32)
    if return_features:
      return output, BackboneFeatures(tuple(pyramid), x, pooled)
    return output


# Keras' variants: (width, depth) and the default input size of each.
EfficientNetV2B0 = partial(EfficientNetV2, width=1.0, depth=1.0)
EfficientNetV2B1 = partial(EfficientNetV2, width=1.0, depth=1.1)
EfficientNetV2B2 = partial(EfficientNetV2, width=1.1, depth=1.2)
EfficientNetV2B3 = partial(EfficientNetV2, width=1.2, depth=1.4)
# For tests and CPU demos: 8 blocks (1 or 2 per stage), 8 to 48 channels, top 320.
EfficientNetV2Tiny = partial(EfficientNetV2, width=0.25, depth=0.25)
DEFAULT_SIZES = {'b0': 224, 'b1': 240, 'b2': 260, 'b3': 300}
