"""Paper 2's classifier: a backbone (EfficientNetV2-B3) under its custom head.

Head, as paper 2 (section III.C, Fig. 2) stacks Keras layers on the backbone's last conv
map: GlobalMaxPooling2D -> BatchNormalization -> Dropout(0.15) -> Dense(hidden, ReLU) ->
BatchNormalization -> Dropout(0.2) -> Dense(num_classes, softmax). We return the logits
(no softmax). The paper gives no hidden width and names no regulariser; we take 256 units
(the width of the common Keras EfficientNet transfer template this head follows) and no
regulariser. Head layers use Keras' defaults: Glorot-uniform kernels, zero biases,
BatchNorm momentum 0.99 and epsilon 1e-3.

Training in two phases (section III.A steps 6 and 8): phase 1 trains the head alone,
`train_backbone=False` runs the whole backbone in inference mode (BatchNorm running
statistics, no stochastic depth, no gradient), as Keras' transfer-learning guide calls a
frozen base model with `training=False`. Phase 2 sets `train_backbone=True`, optionally
with `trainable_blocks=N` to train only the backbone's last N blocks and top.
skinjax/train/transfer.py builds the optimiser that matches.
"""

from functools import partial
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from skinjax.models.deepconvnet import keras_kernel_init
from skinjax.models.dropout import ExampleDropout
from skinjax.models.efficientnet_v2 import EfficientNetV2B3


class SkinHead(nn.Module):
  """Paper 2's head. feature_map: [B, h, w, C] -> float32 logits[B, num_classes]."""

  num_classes: int
  hidden_units: int = 256
  dropout_rates: tuple[float, float] = (0.15, 0.2)
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, feature_map, *, train: bool = False):
    norm = partial(nn.BatchNorm, use_running_average=not train, momentum=self.bn_momentum,
                   epsilon=self.bn_epsilon, dtype=self.dtype, param_dtype=self.param_dtype,
                   axis_name=self.axis_name, use_fast_variance=False)
    dense = partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype,
                    kernel_init=keras_kernel_init)
    x = feature_map.max(axis=(1, 2))  # GlobalMaxPooling2D
    x = norm(name='pool_bn')(x)
    x = ExampleDropout(self.dropout_rates[0], axis_name=self.axis_name)(
        x, deterministic=not train)
    x = nn.relu(dense(self.hidden_units, name='hidden')(x))
    x = norm(name='hidden_bn')(x)
    x = ExampleDropout(self.dropout_rates[1], axis_name=self.axis_name)(
        x, deterministic=not train)
    return dense(self.num_classes, name='logits')(x).astype(jnp.float32)


class Classifier(nn.Module):
  """A backbone under SkinHead. images: float[B, H, W, 3] -> float32 logits[B, classes].

  Attributes:
    backbone: constructor of the backbone (e.g. EfficientNetV2B3). It is built headless
      (`num_classes=None`) with this module's dtypes and axis name, and must return
      `(output, features)` (a BackboneFeatures) when called with `return_features=True`.
      The head reads the stride-32 level of its pyramid, the map Keras' include_top=False
      model outputs (the last conv map, except in VGG16: its last pooling, as Keras' VGG16
      under a head sees it). Its parameters live under 'backbone'.
    num_classes: classes of the head (9 for the ISIC set).
    train_backbone: False for phase 1 (backbone frozen in inference mode).
    trainable_blocks: in phase 2, train only the backbone's last N blocks and top (None:
      all of it). Passed to the backbone, which must then accept it.
  """

  backbone: Callable[..., nn.Module] = EfficientNetV2B3
  num_classes: int = 9
  hidden_units: int = 256
  train_backbone: bool = True
  trainable_blocks: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    extra = {} if self.trainable_blocks is None else {'trainable_blocks': self.trainable_blocks}
    backbone = self.backbone(num_classes=None, dtype=self.dtype, param_dtype=self.param_dtype,
                             axis_name=self.axis_name, name='backbone', **extra)
    backbone_trains = train and self.train_backbone
    _, features = backbone(images, train=backbone_trains, return_features=True)
    feature_map = features.pyramid[-1]
    if train and not backbone_trains:
      feature_map = lax.stop_gradient(feature_map)  # phase 1: nothing in the backbone learns
    return SkinHead(self.num_classes, self.hidden_units, dtype=self.dtype,
                    param_dtype=self.param_dtype, axis_name=self.axis_name,
                    name='head')(feature_map, train=train)
