"""A registry model's train step (Adam, cross-entropy or a mean-square loss for U-Net),
with XLA's convolutions or a library's handlers; medians of 8 steps after the first.

  python step.py lax|/path/to/library.so [model] [image size] [batch]
"""

import contextlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ffi_conv
from skinjax.models import create_model


def main():
  which = sys.argv[1]
  name, size, batch = (sys.argv[2:5] + ['efficientnetv2_b3_skin', '224', '8'][len(sys.argv[2:5]):])
  size, batch = int(size), int(batch)
  segments = name.startswith('unet')
  model = create_model(name) if segments else create_model(name, num_classes=9)
  images = jax.random.uniform(jax.random.key(0), (batch, size, size, 3)) * 255
  labels = jnp.arange(batch) % 9
  variables = model.init(jax.random.key(1), images, train=False)
  optimizer = optax.adam(1e-4)
  patched = contextlib.nullcontext()
  if which != 'lax':
    ffi_conv.register(which)
    patched = ffi_conv.patched_models()

  def step(params, stats, opt_state):
    def loss(params):
      out, updates = model.apply({'params': params, 'batch_stats': stats}, images,
                                 train=True, mutable=['batch_stats'],
                                 rngs={'dropout': jax.random.key(2)})
      if segments:
        return jnp.mean(out ** 2), updates
      return optax.softmax_cross_entropy_with_integer_labels(out, labels).mean(), updates
    (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(params)
    changes, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, changes), updates['batch_stats'], opt_state, value

  state = (variables['params'], variables['batch_stats'],
           optimizer.init(variables['params']))
  with patched:
    step = jax.jit(step)
    start = time.perf_counter()
    *state, value = step(*state)
    jax.block_until_ready(value)
    first = time.perf_counter() - start
    assert ('SkinjaxConvForward' in step.lower(*state).as_text()) == (which != 'lax')
  times = []
  for _ in range(8):
    start = time.perf_counter()
    *state, value = step(*state)
    jax.block_until_ready(value)
    times.append(time.perf_counter() - start)
  print(f'{name} @{size} batch {batch} train step, {which}: median '
        f'{np.median(times) * 1e3:.0f} ms (min {min(times) * 1e3:.0f}), first step '
        f'{first:.1f} s', flush=True)


if __name__ == '__main__':
  main()
