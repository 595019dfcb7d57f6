r"""Worker: times each depthwise implementation on EfficientNetV2-B3's depthwise layers.

  python benchmarks/depthwise.py --image_size=300 --batch_size=8

For every distinct depthwise layer of B3 at --image_size (and the issue's reference
case, f32[8, 38, 38, 192] 3x3 stride 1), each implementation in
skinjax.models.depthwise is timed forward and forward+backward (jitted, median of the
timed windows), and checked against the grouped convolution. A 'B3 total' row per
implementation sums the layers, each times how often B3 has it. Prints ROW lines; the
suite puts them in the results file.
"""

import collections
import functools
import platform

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import protocol
from skinjax.models import depthwise
from skinjax.models.efficientnet_v2 import EfficientNetV2B3

FLAGS = flags.FLAGS
flags.DEFINE_integer('image_size', 300, 'B3 input side whose depthwise layers are timed.')
flags.DEFINE_integer('batch_size', 8, 'Batch of every timed layer.')
flags.DEFINE_list('implementations', ['conv', 'shifted_autodiff', 'shifted'],
                  'Implementations to time (skinjax.models.depthwise.IMPLEMENTATIONS).')
flags.DEFINE_bool('reference_case', True, 'Also time f32[8, 38, 38, 192] 3x3 stride 1.')
flags.DEFINE_integer('max_layers', None, 'Time only the first N distinct layers (tests).')
flags.DEFINE_integer('windows', 5, 'Timed windows.')
flags.DEFINE_float('min_window_s', 0.2, 'Shortest timed window, in seconds.')

REFERENCE = ((8, 38, 38, 192), 3, 1)


def b3_layers(image_size: int, batch_size: int):
  """{((B, H, W, C), kernel, stride): count} of B3's depthwise convolutions."""
  layers = collections.Counter()
  size = -(-image_size // 2)  # the stride-2 stem
  for block in EfficientNetV2B3().blocks:
    if not block.fused:
      channels = block.input_filters * block.expand_ratio
      layers[((batch_size, size, size, channels), block.kernel_size, block.strides)] += 1
    size = -(-size // block.strides)
  return layers


def time_layer(name, shape, kernel_size, stride):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, shape[-1], 1)), jnp.float32)
  forward = jax.jit(functools.partial(depthwise.depthwise_conv, strides=stride,
                                      implementation=name))
  cotangent = jnp.asarray(rng.normal(size=forward(x, kernel).shape), jnp.float32)

  def loss(x, kernel, name):
    return jnp.sum(depthwise.depthwise_conv(x, kernel, stride, implementation=name) * cotangent)

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
  rows = {}
  for what, fn in (('forward', lambda: forward(x, kernel)),
                   ('forward_backward', lambda: grads(x, kernel, name))):
    timing = protocol.time_steps(fn, jax.block_until_ready, 1, windows=FLAGS.windows,
                                 warmup=1, min_window_s=FLAGS.min_window_s)
    rows[f'{what}_ms'] = 1e3 * timing.step_s
  reference = depthwise.conv(x, kernel, stride)
  want = grads(x, kernel, 'conv')
  got = grads(x, kernel, name)
  rows['max_abs_error'] = float(jnp.max(jnp.abs(forward(x, kernel) - reference)))
  rows['max_grad_rel_error'] = max(
      float(jnp.max(jnp.abs(g - w)) / jnp.max(jnp.abs(w))) for g, w in zip(got, want))
  return rows


def main(argv):
  del argv
  for name in FLAGS.implementations:
    if name not in depthwise.IMPLEMENTATIONS:
      raise ValueError(f'--implementations: {name!r} is not one of '
                       f'{depthwise.IMPLEMENTATIONS}')
  device = jax.devices()[0]
  layers = b3_layers(FLAGS.image_size, FLAGS.batch_size)
  cases = ([(REFERENCE, 0)] if FLAGS.reference_case else []) + list(
      layers.items())[:FLAGS.max_layers]
  for name in FLAGS.implementations:
    totals = collections.Counter()
    for (shape, kernel_size, stride), count in cases:
      measured = time_layer(name, shape, kernel_size, stride)
      protocol.emit({'framework': 'depthwise', 'implementation': name, 'shape': list(shape),
                     'kernel': kernel_size, 'stride': stride, 'count_in_b3': count,
                     'platform': device.platform, 'device_kind': device.device_kind,
                     'python': platform.python_version(), **measured})
      for key in ('forward_ms', 'forward_backward_ms'):
        totals[key] += count * measured[key]
    protocol.emit({'framework': 'depthwise', 'implementation': name, 'shape': 'B3 total',
                   'image_size': FLAGS.image_size, 'batch_size': FLAGS.batch_size,
                   'platform': device.platform, 'device_kind': device.device_kind,
                   **totals})


if __name__ == '__main__':
  app.run(main)
