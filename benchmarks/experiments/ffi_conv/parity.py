"""A library's handlers against lax: output, input gradient and kernel gradient of seven
convolutions (odd sides, strides 1 and 2, SAME, VALID, uneven explicit padding, 1x1, 5x5).
Prints one line per case and exits 1 on a mismatch.

  python parity.py /path/to/library.so
"""

import sys

import jax
import numpy as np
from jax import lax

import ffi_conv

NHWC = ('NHWC', 'HWIO', 'NHWC')
CASES = [((2, 9, 11, 3), (3, 3, 3, 8), (1, 1), 'SAME'),
         ((2, 9, 11, 5), (3, 3, 5, 4), (2, 2), 'SAME'),
         ((1, 8, 8, 4), (3, 3, 4, 6), (2, 2), 'SAME'),
         ((3, 7, 7, 4), (5, 5, 4, 2), (1, 1), 'VALID'),
         ((2, 6, 10, 8), (1, 1, 8, 16), (1, 1), 'SAME'),
         ((2, 6, 10, 8), (1, 1, 8, 16), (2, 2), 'VALID'),
         ((2, 10, 9, 3), (3, 2, 3, 5), (2, 1), ((2, 0), (1, 3)))]


def outputs(conv, x, k, g, strides, padding):
  y, vjp = jax.vjp(lambda x, k: conv(x, k, strides, padding, dimension_numbers=NHWC), x, k)
  return (y, *vjp(g))


def main():
  ffi_conv.register(sys.argv[1])
  failed = 0
  for x_shape, k_shape, strides, padding in CASES:
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, x_shape)
    k = jax.random.normal(kk, k_shape) / np.sqrt(np.prod(k_shape[:3]))
    y = lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)
    g = jax.random.normal(kg, y.shape)
    ours = jax.jit(lambda x, k, g: outputs(ffi_conv.conv_general_dilated, x, k, g, strides,
                                           padding))(x, k, g)
    theirs = outputs(lax.conv_general_dilated, x, k, g, strides, padding)
    errors = [float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs)]
    ok = all(e <= 2e-5 for e in errors)
    failed += not ok
    print(f'{"ok  " if ok else "FAIL"} {x_shape} {k_shape} {strides} {padding}: max |diff| '
          f'output {errors[0]:.1e}, input gradient {errors[1]:.1e}, kernel gradient '
          f'{errors[2]:.1e}')
  sys.exit(1 if failed else 0)


if __name__ == '__main__':
  main()
