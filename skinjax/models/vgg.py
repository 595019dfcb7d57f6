"""Keras' VGG16 (`keras.applications.VGG16`), layer for layer, for paper 1's and paper 2's
comparison tables.

As keras.applications builds it (keras/src/applications/vgg16.py):
- Five blocks (`block1` .. `block5`) of 3x3 SAME convolutions with a bias and ReLU (64, 64;
  128, 128; 256 x 3; 512 x 3; 512 x 3 filters), each block ending in a 2x2 stride-2 VALID
  max pool (`block{i}_pool`). No BatchNorm; Glorot-uniform kernels, zero biases.
- Top: Flatten (`flatten`, NHWC in row-major order, so fc1's rows are (h, w, c) as Keras
  lays them out) -> Dense 4096 + ReLU (`fc1`) -> Dense 4096 + ReLU (`fc2`) -> Dense
  `predictions` (1000 classes); the logits are returned, Keras' softmax left out. fc1's
  input width is the flattened block5_pool map, so it depends on the input size (224 ->
  7 * 7 * 512): a Keras file converts at the size it was built for (`input_size_of_fc1`).
- `num_classes=None`: headless; pooled features are the global average of block5_pool
  (Keras' `include_top=False, pooling='avg'`).
- `include_preprocessing` (off by default, as Keras' model has none): Keras' vgg16
  `preprocess_input` inside the model for pixels in [0, 255], mode "caffe" (RGB -> BGR,
  minus the ImageNet BGR means).

Grad-CAM's map (`last_conv`, marked with mark_gradcam_map) is block5_conv3 after its ReLU,
the last convolution, at stride 16 (Grad-CAM's usual choice for VGG16: twice the resolution
of the pooled map). The pyramid's stride-32 level is block5_pool, Keras' headless output.
Paper 2's head (heads.Classifier) reads the pyramid's stride-32 level, block5_pool, as
Keras' VGG16(include_top=False) under a head does.

Module names are Keras' layer names, so that converted weights need no name table.
"""

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from skinjax.models.backbone_features import BackboneFeatures
from skinjax.models.deepconvnet import keras_kernel_init
from skinjax.models.gradcam_map import mark_gradcam_map
from skinjax.models.pooling import max_pool
from skinjax.models.resnet import CAFFE_BGR_MEAN

# (filters, convolutions) of block1 .. block5.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def input_size_of_fc1(rows: int, channels: int = 512) -> int:
  """The smallest input size whose flattened block5_pool map has `rows` values (fc1's kernel
  rows): 25088 -> 224. Every size up to 31 more gives the same map."""
  side = round((rows / channels) ** 0.5)
  if side < 1 or side * side * channels != rows:
    raise ValueError(f'fc1 has {rows} input rows, not a square map of {channels} channels '
                     '(side * side * channels)')
  return 32 * side


class VGG(nn.Module):
  """`__call__(images, train=False, return_features=False)`.

  images: float[B, H, W, 3], H and W >= 32; pixels in [0, 255] with `include_preprocessing`,
  else already preprocessed as Keras' `preprocess_input` does. Returns float32 logits
  [B, num_classes] (pooled features [B, 512] when headless), and with `return_features` a
  BackboneFeatures: the pyramid of block pools (strides 2 .. 32), last_conv (block5_conv3,
  stride 16, see the module docstring) and pooled (block5_pool's global average).

  Attributes:
    blocks: (filters, convolutions) per block, block1 .. block5.
    top_units: width of fc1 and fc2.
    trainable_blocks: with `train`, only the last N blocks (and the top) train; the blocks
      before them get no gradient (None: all train).
  """

  blocks: tuple[tuple[int, int], ...] = VGG16_BLOCKS
  top_units: int = 4096
  num_classes: int | None = 1000
  include_preprocessing: bool = False
  trainable_blocks: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None  # unused (no BatchNorm); every registry model takes it

  def _dense(self, features, *, name):
    return nn.Dense(features, kernel_init=keras_kernel_init, dtype=self.dtype,
                    param_dtype=self.param_dtype, name=name)

  @nn.compact
  def __call__(self, images, *, train: bool = False, return_features: bool = False):
    if self.trainable_blocks is not None and self.trainable_blocks < 0:
      raise ValueError(f'trainable_blocks must be None or >= 0, got {self.trainable_blocks}')
    frozen = 0 if self.trainable_blocks is None else max(
        len(self.blocks) - self.trainable_blocks, 0)
    x = images
    if self.include_preprocessing:  # mode 'caffe'
      x = images.astype(jnp.float32)[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN, jnp.float32)
    x = x.astype(self.dtype)
    pyramid = []
    for index, (filters, convs) in enumerate(self.blocks, start=1):
      for i in range(1, convs + 1):
        x = nn.relu(nn.Conv(filters, (3, 3), padding='SAME', kernel_init=keras_kernel_init,
                            dtype=self.dtype, param_dtype=self.param_dtype,
                            name=f'block{index}_conv{i}')(x))
      if train and index <= frozen:  # nothing in or before a frozen block trains
        x = lax.stop_gradient(x)
      if index == len(self.blocks):
        last_conv = x = mark_gradcam_map(self, x)
      x = max_pool(x, (2, 2))  # `block{index}_pool`
      pyramid.append(x)
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    output = pooled
    if self.num_classes is not None:
      x = x.reshape((x.shape[0], -1))  # Keras' Flatten: (h, w, c) row-major
      x = nn.relu(self._dense(self.top_units, name='fc1')(x))
      x = nn.relu(self._dense(self.top_units, name='fc2')(x))
      output = self._dense(self.num_classes, name='predictions')(x).astype(jnp.float32)
    if return_features:
      return output, BackboneFeatures(tuple(pyramid), last_conv, pooled)
    return output


VGG16 = partial(VGG, blocks=VGG16_BLOCKS, top_units=4096)
# For tests: the same layers (one to three convolutions a block, five pools, the three-Dense
# top) at 8 to 32 channels and a 64-unit top.
VGGTiny = partial(VGG, blocks=((8, 1), (16, 2), (16, 1), (32, 3), (32, 1)), top_units=64)
