"""2-D convolution for `flax.linen.Conv(conv_general_dilated=...)`, with a kernel gradient
that XLA:CPU runs fast at small batches.

XLA computes a SAME convolution's kernel gradient as one convolution whose window is the
whole (padded) output map and whose output is only kh x kw x C_in x C_out. XLA:CPU's Eigen
kernel runs that shape slowly when the padding is part of it: for U-Net's 16->16 layer at
224x224, batch 2, 10.3 ms, against 5.1 ms for the same gradient of a VALID convolution
over the input padded beforehand, and TensorFlow's 1.4 ms (2-core AMD EPYC, jax 0.10.2;
benchmarks/conv_kernel_grad.py times U-Net's layers: 1.8x over all of them). So the kernel
gradient here pads first; the forward pass and the input gradient are lax's own. At batch
8 (B3's layers) the two take the same time, so only U-Net uses this. The numbers are the
same sum (float32 rounding apart; tests/test_conv2d.py).

That holds for Eigen's convolutions, which XLA:CPU runs when YNNPACK's are turned off
(`--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`, the flag the launchers
and benchmarks set: launch/xla_flags.py). With XLA's defaults YNNPACK runs them, and there
the padded gradient is 0.72x lax's over U-Net's layers, so without that flag in XLA_FLAGS
this is lax's convolution throughout.

GPUs and TPUs have native kernel-gradient convolutions, so everywhere but the CPU this is
`lax.conv_general_dilated` itself; the choice is made when XLA lowers for a platform
(`lax.platform_dependent`), as for the depthwise convolution.
"""

import functools
import os

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type='


def eigen_convolutions() -> bool:
  """Whether XLA_FLAGS turns YNNPACK's convolutions off (its last setting of the flag
  names -individual_convolution), so that XLA:CPU runs Eigen's."""
  values = [flag[len(_YNN_FLAG):] for flag in os.environ.get('XLA_FLAGS', '').split()
            if flag.startswith(_YNN_FLAG)]
  return bool(values) and '-individual_convolution' in values[-1].split(',')


def _pads(x_shape, kernel_shape, strides, padding):
  if isinstance(padding, str):
    return lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], strides, padding)
  return [tuple(p) for p in padding]


def kernel_grad_padded(x, grad, kernel_shape, strides, padding):
  """d(loss)/d(kernel) of an NHWC x HWIO convolution, as the kernel gradient of the VALID
  convolution of x padded beforehand.

  x: [B, H, W, C_in]; grad: [B, H', W', C_out], the output's gradient; returns
  [kh, kw, C_in, C_out] in the kernel's layout.
  """
  (top, bottom), (left, right) = _pads(x.shape, kernel_shape, strides, padding)
  padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  zeros = jnp.zeros(tuple(kernel_shape), x.dtype)  # the gradient is linear in grad alone
  _, vjp = jax.vjp(lambda k: lax.conv_general_dilated(padded, k, strides, 'VALID',
                                                      dimension_numbers=_NHWC), zeros)
  return vjp(grad)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_padded_kernel_grad(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_NHWC)


def _conv_padded_kernel_grad_fwd(x, kernel, strides, padding):
  return _conv_padded_kernel_grad(x, kernel, strides, padding), (x, kernel)


def _conv_padded_kernel_grad_bwd(strides, padding, residuals, grad):
  x, kernel = residuals
  _, input_vjp = jax.vjp(
      lambda x: lax.conv_general_dilated(x, kernel, strides, padding,
                                         dimension_numbers=_NHWC), x)
  return input_vjp(grad)[0], kernel_grad_padded(x, grad, kernel.shape, strides, padding)


_conv_padded_kernel_grad.defvjp(_conv_padded_kernel_grad_fwd, _conv_padded_kernel_grad_bwd)


def _is_plain_2d(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers,
                 feature_group_count, precision):
  ones = lambda d: d is None or all(v == 1 for v in d)
  numbers = (lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             if dimension_numbers is not None else None)
  return (lhs.ndim == 4 and numbers == _NHWC and ones(lhs_dilation) and ones(rhs_dilation)
          and feature_group_count == 1 and precision is None)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
  """`lax.conv_general_dilated`, with the padded kernel gradient on the CPU for the plain
  NHWC 2-D case (no dilation, no groups) when XLA runs Eigen's convolutions; anything else
  is lax's as it is."""
  plain = lax.conv_general_dilated
  args = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
              dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
              precision=precision, **kwargs)
  if kwargs or not eigen_convolutions() or not _is_plain_2d(
      lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
      precision):
    return plain(lhs, rhs, window_strides, padding, **args)
  strides = tuple(window_strides)
  pads = tuple(_pads(lhs.shape, rhs.shape, strides, padding))
  return lax.platform_dependent(
      lhs, rhs, cpu=lambda x, k: _conv_padded_kernel_grad(x, k, strides, pads),
      default=lambda x, k: plain(x, k, strides, pads, dimension_numbers=_NHWC))
