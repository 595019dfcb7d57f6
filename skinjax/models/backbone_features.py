"""What a backbone's `return_features=True` adds, the same for every family (EfficientNetV2,
the comparison networks), so that Grad-CAM and the classifier head read any of them."""

from typing import NamedTuple

import jax


class BackboneFeatures(NamedTuple):
  """pyramid: the last map at each stride 2, 4, 8, 16, 32 (compute dtype, NHWC); the stride-32
    level is the top activation, which Keras' include_top=False model outputs.
  last_conv: the top activation, compute dtype [B, H/32, W/32, top filters] (Grad-CAM's map).
  pooled: float32[B, top filters], its global average (Keras `avg_pool`).
  """

  pyramid: tuple[jax.Array, ...]
  last_conv: jax.Array
  pooled: jax.Array
