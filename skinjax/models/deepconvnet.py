"""DeepConvNet: paper 1's 12-layer CNN for HAM10000 at 28x28 (Elgohary et al., 2024).

Layers, as the paper's Keras model stacks them: four (Conv2D 3x3 SAME + ReLU ->
MaxPooling2D 2x2) pairs with 16, 32, 64, 128 filters, Flatten, Dense 64, Dense 32 and the
Dense output: 12 layers, 108,007 parameters at 28x28x3 with 7 classes.

Keras' MaxPooling2D pads VALID, so 28 -> 14 -> 7 -> 3 -> 1 and Flatten sees 128 values;
that is the only reading of the paper that gives its parameter count.
"""

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from skinjax.models.gradcam_map import mark_gradcam_map
from skinjax.models.pooling import max_pool

# Keras Conv2D and Dense defaults: Glorot-uniform kernels, zero biases.
keras_kernel_init = nn.initializers.glorot_uniform()


class DeepConvNet(nn.Module):
  """Paper 1's classifier. Returns float32 logits[B, num_classes]; no softmax.

  Attributes:
    num_classes: output classes (7 for HAM10000).
    dtype: compute dtype (bfloat16 on accelerators); parameters stay param_dtype.
    param_dtype: storage dtype of the parameters.
    axis_name: unused (no BatchNorm); present so every registry model takes it.
  """

  num_classes: int = 7
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    """images: float[B, H, W, 3], already normalised. `train` changes nothing here."""
    del train
    conv = partial(nn.Conv, kernel_size=(3, 3), padding='SAME', dtype=self.dtype,
                   param_dtype=self.param_dtype, kernel_init=keras_kernel_init)
    dense = partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype,
                    kernel_init=keras_kernel_init)
    x = images.astype(self.dtype)
    for index, features in enumerate((16, 32, 64, 128), start=1):
      x = nn.relu(conv(features, name=f'conv{index}')(x))
      if index == 4:
        x = mark_gradcam_map(self, x)  # the last conv map, after its ReLU as Keras outputs it
      x = max_pool(x, (2, 2))
    x = x.reshape((x.shape[0], -1))  # NHWC flattened in (H, W, C) order, as Keras does.
    x = nn.relu(dense(64, name='dense1')(x))
    x = nn.relu(dense(32, name='dense2')(x))
    logits = dense(self.num_classes, name='logits')(x)
    return logits.astype(jnp.float32)
