"""Each handler of a library against XLA's own, one convolution at a time: forward, input
gradient, kernel gradient (and skinjax's padded kernel gradient, U-Net's).

  python parts.py /path/to/library.so [count]
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import ffi_conv
from skinjax.models import conv2d

NHWC = ('NHWC', 'HWIO', 'NHWC')
# B3's FusedMBConv and stem layers at 224, batch 8; U-Net's first level; two 1x1s.
SHAPES = [((8, 112, 112, 32), (3, 3, 32, 32), (1, 1)), ((8, 56, 56, 40), (3, 3, 40, 160), (1, 1)),
          ((8, 224, 224, 3), (3, 3, 3, 24), (2, 2)), ((2, 224, 224, 16), (3, 3, 16, 16), (1, 1)),
          ((8, 112, 112, 32), (3, 3, 32, 128), (2, 2)), ((8, 28, 28, 64), (1, 1, 64, 256), (1, 1)),
          ((8, 14, 14, 128), (1, 1, 128, 768), (1, 1))]


def median_ms(fn, *args, calls=15):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times)) * 1e3


def main():
  ffi_conv.register(sys.argv[1])
  for xs, ks, st in SHAPES[:int(sys.argv[2]) if len(sys.argv) > 2 else None]:
    x = jax.random.normal(jax.random.key(0), xs)
    k = jax.random.normal(jax.random.key(1), ks)
    pads = tuple(tuple(p) for p in lax.padtype_to_pads(xs[1:3], ks[:2], st, 'SAME'))
    conv = lambda x, k: lax.conv_general_dilated(x, k, st, pads, dimension_numbers=NHWC)
    y = conv(x, k)
    g = jnp.ones_like(y) * 0.5
    xla = [jax.jit(conv),
           jax.jit(lambda g, k: jax.vjp(lambda x: conv(x, k), jnp.zeros(xs))[1](g)[0]),
           jax.jit(lambda x, g: jax.vjp(lambda k: conv(x, k), jnp.zeros(ks))[1](g)[0])]
    padded = jax.jit(lambda x, g: conv2d.kernel_grad_padded(x, g, ks, st, pads))
    ours = [jax.jit(lambda x, k: ffi_conv._call('SkinjaxConvForward', y, x, k, strides=st, pads=pads)),
            jax.jit(lambda g, k: ffi_conv._call('SkinjaxConvBackwardData', x, g, k, strides=st, pads=pads)),
            jax.jit(lambda x, g: ffi_conv._call('SkinjaxConvBackwardWeights', k, x, g, strides=st, pads=pads))]
    operands = [(x, k), (g, k), (x, g)]
    r = [median_ms(f, *a) for f, a in zip(xla, operands)]
    o = [median_ms(f, *a) for f, a in zip(ours, operands)]
    pad_ms = median_ms(padded, x, g)
    print(f'{xs} {ks} {st}: fwd {r[0]:.1f}/{o[0]:.1f}  dx {r[1]:.1f}/{o[1]:.1f}  '
          f'dk {r[2]:.1f}(padded {pad_ms:.1f})/{o[2]:.1f} ms (XLA/FFI)  '
          f'XLA over FFI {(r[0] + r[1] + min(r[2], pad_ms)) / sum(o):.2f}x', flush=True)


if __name__ == '__main__':
  main()
