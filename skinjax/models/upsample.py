"""Keras' Conv2DTranspose with its kernel equal to its stride (U-Net's 2x2 stride-2
up-sampling), as one matrix product.

With kernel = stride and SAME padding the output windows do not overlap: every input
pixel becomes its own kh x kw block, `block[i, j] = x @ kernel[kh-1-i, kw-1-j] + bias`
(Flax convolves the dilated input with the kernel as stored, so the block sees it
reversed). XLA lowers `flax.linen.ConvTranspose` to an input-dilated convolution, and its kernel gradient to a
convolution with a 112x112 window over the dilated map: on the CPU those four gradients
took a quarter of U-Net's training step (width 16 @224, 2-core AMD EPYC, jax 0.10.2:
250 ms of 1,000, from a jax.profiler trace of the step). As an einsum the forward pass and both gradients are matrix products.
Parameters are ConvTranspose's, named and shaped alike (kernel [kh, kw, in, out], bias),
so U-Net checkpoints saved with either load into the other.
"""

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp


class BlockTransposeConv(nn.Module):
  """`nn.ConvTranspose(features, kernel_size, strides=kernel_size, padding='SAME')`."""

  features: int
  kernel_size: tuple[int, int] = (2, 2)
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (kh, kw, x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    batch, height, width, _ = x.shape
    y = jnp.einsum('bhwc,ijco->bhiwjo', x, kernel[::-1, ::-1])
    y = y.reshape(batch, height * kh, width * kw, self.features)
    return y if bias is None else y + bias
