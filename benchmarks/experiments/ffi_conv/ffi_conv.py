"""Loads one of this folder's FFI convolution libraries and makes it a drop-in for
`lax.conv_general_dilated` (a `custom_vjp` over its forward, input-gradient and
kernel-gradient handlers); `patched_models()` routes every flax `nn.Conv` and U-Net's
convolution through it. An experiment, not part of skinjax: README.md says what it measured.
"""

import contextlib
import ctypes
import functools
import types

import flax.linen.linear as flax_linear
import jax
import numpy as np
from jax import lax

_NHWC = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
_TARGETS = ('SkinjaxConvForward', 'SkinjaxConvBackwardData', 'SkinjaxConvBackwardWeights')


def register(path: str) -> None:
  """Registers the library's three handlers with XLA (once per process)."""
  library = ctypes.CDLL(path)
  if library.SkinjaxConvAbiVersion() != 1:
    raise RuntimeError(f'{path}: built from another version of the handlers')
  for name in _TARGETS:
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)),
                                platform='cpu')


def _call(target, like, *operands, strides, pads):
  (top, bottom), (left, right) = pads
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(like.shape, like.dtype),
                          vmap_method='sequential')(
      *operands, stride_h=np.int64(strides[0]), stride_w=np.int64(strides[1]),
      pad_top=np.int64(top), pad_bottom=np.int64(bottom), pad_left=np.int64(left),
      pad_right=np.int64(right))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def ffi_conv(x, kernel, strides, pads):
  out = jax.eval_shape(lambda x, k: lax.conv_general_dilated(
      x, k, strides, pads, dimension_numbers=_NHWC), x, kernel)
  return _call('SkinjaxConvForward', out, x, kernel, strides=strides, pads=pads)


def _fwd(x, kernel, strides, pads):
  return ffi_conv(x, kernel, strides, pads), (x, kernel)


def _bwd(strides, pads, residuals, grad):
  x, kernel = residuals
  return (_call('SkinjaxConvBackwardData', x, grad, kernel, strides=strides, pads=pads),
          _call('SkinjaxConvBackwardWeights', kernel, x, grad, strides=strides, pads=pads))


ffi_conv.defvjp(_fwd, _bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """The handlers for plain NHWC x HWIO float32 2-D convolutions; lax's for the rest."""
  args = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
              dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
              batch_group_count=batch_group_count, precision=precision,
              preferred_element_type=preferred_element_type)
  ones = lambda d: d is None or all(v == 1 for v in d)
  plain = (lhs.ndim != 4 or dimension_numbers is None or lhs.dtype != np.float32
           or not ones(lhs_dilation) or not ones(rhs_dilation) or feature_group_count != 1
           or batch_group_count != 1
           or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _NHWC)
  if plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **args)
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if any(p < 0 for pad in pads for p in pad):
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **args)
  return ffi_conv(lhs, rhs, strides, pads)


@contextlib.contextmanager
def patched_models():
  """Within the block, models traced use the handlers: flax's nn.Conv (through the `lax`
  its module sees) and U-Net's skinjax.models.conv2d."""
  from skinjax.models import conv2d  # pylint: disable=import-outside-toplevel
  saved = flax_linear.lax, conv2d.conv_general_dilated
  flax_linear.lax = types.SimpleNamespace(**{name: getattr(lax, name) for name in dir(lax)
                                             if not name.startswith('__')})
  flax_linear.lax.conv_general_dilated = conv_general_dilated
  conv2d.conv_general_dilated = conv_general_dilated
  try:
    yield
  finally:
    flax_linear.lax, conv2d.conv_general_dilated = saved
