"""Depthwise convolution (Keras DepthwiseConv2D, depth multiplier 1, 'SAME' or 'VALID'), per
backend.

XLA:CPU runs a grouped convolution (`feature_group_count=C`) as a slow generic loop; the
sums of shifted multiplies below are what it runs fast (benchmarks/depthwise.py times
each on B3's layers; the numbers are in benchmarks/results/). GPUs and TPUs have native
depthwise kernels, so everywhere but the CPU the convolution stays a convolution. The
choice is made when XLA lowers for a platform (`lax.platform_dependent`), not from the
default backend at trace time.

Implementations (all give the same numbers within float32 rounding, tests/test_depthwise.py):
  'conv'     lax.conv_general_dilated with feature_group_count=C.
  'shifted'  k*k shifted slices of the padded input times the kernel's taps, summed in
             one fused loop, with a hand-written gradient: the input gradient is the same
             kind of sum over the output gradient, the kernel gradient one variadic
             reduce of the k*k tap products (see _shifted_bwd).
  'shifted_autodiff'  the same forward, differentiated by JAX (kept to be measured: its
             k*k separate reductions make its forward+backward up to 4x slower per layer
             on XLA:CPU, 1.8x over all of B3's depthwise layers).
  'auto'     'shifted' on the CPU, 'conv' elsewhere.
"""

import contextlib
import contextvars
import functools

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMPLEMENTATIONS = ('auto', 'conv', 'shifted', 'shifted_autodiff')

_override = contextvars.ContextVar('depthwise_implementation', default=None)


@contextlib.contextmanager
def use_implementation(name: str):
  """Within the block, models trace their depthwise convolutions with `name` (benchmarks)."""
  _check(name)
  token = _override.set(name)
  try:
    yield
  finally:
    _override.reset(token)


def _check(name):
  if name not in IMPLEMENTATIONS:
    raise ValueError(f'depthwise implementation {name!r} is not one of {IMPLEMENTATIONS}')


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
  """TensorFlow's 'SAME': (pad before, pad after, output size); the extra row goes after."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2, out


def padding_of(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
  """(pad before, pad after, output size) of `padding` ('SAME' or 'VALID') along one axis."""
  if padding == 'SAME':
    return same_padding(size, kernel, stride)
  if padding == 'VALID':  # Keras' ZeroPadding2D + 'valid' layers pad outside, beforehand
    return 0, 0, (size - kernel) // stride + 1
  raise ValueError(f"depthwise padding must be 'SAME' or 'VALID', got {padding!r}")


def conv(x, kernel, strides: int, padding: str = 'SAME'):
  """Grouped convolution. x: [B, H, W, C]; kernel: [kh, kw, C, 1]."""
  kh, kw, channels, _ = kernel.shape
  padding_of(1, 1, 1, padding)  # checks the name
  return lax.conv_general_dilated(
      x, kernel.reshape(kh, kw, 1, channels), window_strides=(strides, strides),
      padding=padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=channels)


def _taps(padded, kh: int, kw: int, stride: int, out_h: int, out_w: int):
  """((i, j), the strided window of `padded` that tap (i, j) of the kernel multiplies)."""
  batch, _, _, channels = padded.shape
  for i in range(kh):
    for j in range(kw):
      yield (i, j), lax.slice(padded, (0, i, j, 0),
                              (batch, i + (out_h - 1) * stride + 1,
                               j + (out_w - 1) * stride + 1, channels),
                              (1, stride, stride, 1))


def _shifted_sum(padded, taps, stride: int, out_h: int, out_w: int, dtype):
  """sum over (i, j) of window(i, j) * taps[i, j], accumulated in float32.

  padded: [B, Hp, Wp, C]; taps: [kh, kw, C]. Returns `dtype`[B, out_h, out_w, C].
  """
  kh, kw = taps.shape[:2]
  taps = taps.astype(jnp.float32)
  total = None
  for (i, j), window in _taps(padded, kh, kw, stride, out_h, out_w):
    term = window.astype(jnp.float32) * taps[i, j]
    total = term if total is None else total + term
  return total.astype(dtype)


def _pad(x, kh: int, kw: int, stride: int, padding: str):
  top, bottom, out_h = padding_of(x.shape[1], kh, stride, padding)
  left, right, out_w = padding_of(x.shape[2], kw, stride, padding)
  return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))), out_h, out_w


def shifted_autodiff(x, kernel, strides: int, padding: str = 'SAME'):
  """Sum of shifted multiplies, gradient by JAX. x: [B, H, W, C]; kernel: [kh, kw, C, 1]."""
  kh, kw = kernel.shape[:2]
  padded, out_h, out_w = _pad(x, kh, kw, strides, padding)
  return _shifted_sum(padded, kernel[..., 0], strides, out_h, out_w, x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def shifted(x, kernel, strides: int, padding: str = 'SAME'):
  """Sum of shifted multiplies with a hand-written gradient (see the module docstring)."""
  return shifted_autodiff(x, kernel, strides, padding)


def _shifted_fwd(x, kernel, strides, padding):
  # Residuals are the inputs themselves: re-padding in the backward pass is cheaper than
  # keeping a padded copy alive.
  return shifted_autodiff(x, kernel, strides, padding), (x, kernel)


def _shifted_bwd(strides, padding, residuals, grad):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  height, width = x.shape[1:3]
  top, bottom, out_h = padding_of(height, kh, strides, padding)
  left, right, out_w = padding_of(width, kw, strides, padding)
  padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  taps = kernel[..., 0].astype(jnp.float32)
  grad32 = grad.astype(jnp.float32)
  if strides == 1:
    # d/dx: the output gradient, padded so every input pixel sees the outputs it fed,
    # correlated with the flipped kernel (the forward's own fused loop). With 'VALID', the
    # gradient is padded by kh - 1 each side (a full correlation).
    around = lax.pad(grad32, jnp.float32(0), ((0, 0, 0), (kh - 1 - top, kh - 1 - bottom, 0),
                                              (kw - 1 - left, kw - 1 - right, 0), (0, 0, 0)))
    dx = _shifted_sum(around, taps[::-1, ::-1], 1, height, width, x.dtype)
  else:
    # Strided: each tap's gradient scattered back to the input pixels it read (a pad with
    # stride - 1 zeros between), summed; correlating a dilated gradient would multiply
    # (stride**2 - 1) zeros for every value.
    span_h, span_w = (out_h - 1) * strides + 1, (out_w - 1) * strides + 1
    dpadded = None
    for i in range(kh):
      for j in range(kw):
        term = lax.pad(grad32 * taps[i, j], jnp.float32(0),
                       ((0, 0, 0), (i, padded.shape[1] - i - span_h, strides - 1),
                        (j, padded.shape[2] - j - span_w, strides - 1), (0, 0, 0)))
        dpadded = term if dpadded is None else dpadded + term
    dx = dpadded[:, top:top + height, left:left + width].astype(x.dtype)
  # d/dkernel[i, j]: sum over batch and space of window(i, j) * grad. One variadic reduce
  # over the width for all taps, then the rest, instead of one reduction per tap (what
  # 'shifted_autodiff' gets from JAX; benchmarks/results/ compare the two per layer).
  products = tuple(window.astype(jnp.float32) * grad32
                   for _, window in _taps(padded, kh, kw, strides, out_h, out_w))
  rows = lax.reduce(products, tuple(jnp.float32(0) for _ in products),
                    lambda a, b: tuple(u + v for u, v in zip(a, b)), (2,))
  dkernel = jnp.stack(rows).sum(axis=(1, 2)).reshape(kernel.shape).astype(kernel.dtype)
  return dx, dkernel


shifted.defvjp(_shifted_fwd, _shifted_bwd)


def auto_implementation(platform: str) -> str:
  """What 'auto' runs on `platform` ('cpu', 'gpu', 'tpu')."""
  return 'shifted' if platform == 'cpu' else 'conv'


def depthwise_conv(x, kernel, strides: int, implementation: str | None = None,
                   padding: str = 'SAME'):
  """Keras DepthwiseConv2D with depth multiplier 1, no bias, padding 'SAME' (TensorFlow's:
  the extra row after) or 'VALID' (for Keras' ZeroPadding2D + 'valid' layers: MobileNet's
  strided ones, MobileNetV2's and EfficientNet's `correct_pad`).

  x: [B, H, W, C]; kernel: [kh, kw, C, 1] (Keras' layout). Returns [B, H', W', C] in
  x's dtype. implementation: one of IMPLEMENTATIONS; None takes the one set by
  `use_implementation(...)` around the call, else 'auto'.
  """
  name = implementation or _override.get() or 'auto'
  _check(name)
  padding_of(1, 1, 1, padding)  # checks the name before any tracing
  functions = {'conv': conv, 'shifted': shifted, 'shifted_autodiff': shifted_autodiff}
  if name == 'auto':
    on_cpu = functions[auto_implementation('cpu')]
    return lax.platform_dependent(x, kernel, cpu=lambda x, k: on_cpu(x, k, strides, padding),
                                  default=lambda x, k: conv(x, k, strides, padding))
  return functions[name](x, kernel, strides, padding)


class DepthwiseConv(nn.Module):
  """Keras DepthwiseConv2D (depth multiplier 1, no bias); param `kernel` [k, k, C, 1] as Keras
  stores it. kernel_init: Keras' default, Glorot-uniform (its [k, k, C, 1] shape gives
  fan_in = k * k * C, fan_out = k * k, as Keras computes them); padding 'SAME' or 'VALID'."""

  kernel_size: int
  strides: int = 1
  padding: str = 'SAME'
  kernel_init: Callable[..., Any] = nn.initializers.glorot_uniform()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init,
                        (self.kernel_size, self.kernel_size, x.shape[-1], 1), self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return depthwise_conv(x, kernel, self.strides, padding=self.padding)
