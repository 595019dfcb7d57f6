"""U-Net: paper 1's lesion segmenter for PH2 at 224x224 (Elgohary et al., 2024).

Encoder: four blocks of [Conv2D 3x3 -> BatchNorm -> ReLU] x2, each followed by a 2x2
max-pool, widths base*(1, 2, 4, 8), then a base*16 bottleneck block. Decoder: four steps of
Conv2DTranspose 2x2 stride 2 -> concatenate the skip -> the same block; a final 1x1 conv
gives one logit per pixel. With base 64 this has 31,055,297 parameters counting BatchNorm
statistics, as the Keras model with biased convolutions has.

The paper names spatial dropout (0.4) without placing it; we put it where the common Keras
U-Net template does: after every encoder max-pool and after every decoder concatenation.
BatchNorm uses Keras' defaults (momentum 0.99, epsilon 1e-3), which differ from Flax's, and
Keras' two-pass variance, E[(x - E[x])^2]: Flax's default E[x^2] - E[x]^2 cancels
catastrophically when a channel's mean is large next to its spread.
"""

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from skinjax.models import conv2d
from skinjax.models.deepconvnet import keras_kernel_init
from skinjax.models.dropout import ExampleDropout
from skinjax.models.pooling import max_pool
from skinjax.models.upsample import BlockTransposeConv


class SpatialDropout(nn.Module):
  """Keras SpatialDropout2D: drops whole channels of an NHWC map, one draw per (B, C)."""

  rate: float
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    return ExampleDropout(self.rate, broadcast_dims=(1, 2), axis_name=self.axis_name)(
        x, deterministic=not train)


class ConvBlock(nn.Module):
  """[Conv2D 3x3 SAME -> BatchNorm -> ReLU] x 2."""

  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = partial(nn.Conv, self.features, (3, 3), padding='SAME', dtype=self.dtype,
                   conv_general_dilated=conv2d.conv_general_dilated,
                   param_dtype=self.param_dtype, kernel_init=keras_kernel_init)
    norm = partial(nn.BatchNorm, use_running_average=not train, momentum=self.bn_momentum,
                   epsilon=self.bn_epsilon, dtype=self.dtype, param_dtype=self.param_dtype,
                   axis_name=self.axis_name, use_fast_variance=False)
    for index in (1, 2):
      x = conv(name=f'conv{index}')(x)
      x = nn.relu(norm(name=f'bn{index}')(x))
    return x


class UNet(nn.Module):
  """Returns float32 logits[B, H, W, num_outputs] for images float[B, H, W, C].

  H and W must be divisible by 2**depth (16 by default).

  Attributes:
    num_outputs: channels of the output logits (1 for a binary lesion mask).
    base_width: width of the first block; 64 in paper 1, small for tests.
    depth: number of down-sampling steps.
    dropout_rate: spatial dropout rate (0.4 in paper 1's Table 2).
    axis_name: name of the pmap axis, so BatchNorm statistics span all devices.
  """

  num_outputs: int = 1
  base_width: int = 64
  depth: int = 4
  dropout_rate: float = 0.4
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    factor = 2**self.depth
    height, width = images.shape[1:3]
    if height % factor or width % factor:
      raise ValueError(f'UNet input size {height}x{width} is not divisible by {factor} '
                       f'(2**depth, depth={self.depth}); resize or pad the images.')
    block = partial(ConvBlock, dtype=self.dtype, param_dtype=self.param_dtype,
                    axis_name=self.axis_name, bn_momentum=self.bn_momentum,
                    bn_epsilon=self.bn_epsilon)
    dropout = partial(SpatialDropout, self.dropout_rate, axis_name=self.axis_name)
    x = images.astype(self.dtype)
    skips = []
    for level in range(self.depth):
      x = block(self.base_width * 2**level, name=f'encoder{level + 1}')(x, train=train)
      skips.append(x)
      x = max_pool(x, (2, 2))
      x = dropout()(x, train=train)
    x = block(self.base_width * factor, name='bottleneck')(x, train=train)
    for level in reversed(range(self.depth)):
      features = self.base_width * 2**level
      x = BlockTransposeConv(features, (2, 2), dtype=self.dtype,
                             param_dtype=self.param_dtype, kernel_init=keras_kernel_init,
                             name=f'upsample{level + 1}')(x)
      x = jnp.concatenate([x, skips[level]], axis=-1)
      x = dropout()(x, train=train)
      x = block(features, name=f'decoder{level + 1}')(x, train=train)
    logits = nn.Conv(self.num_outputs, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype,
                     kernel_init=keras_kernel_init, name='logits')(x)
    return logits.astype(jnp.float32)
