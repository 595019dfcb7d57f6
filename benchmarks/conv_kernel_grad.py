r"""Times a 3x3 SAME convolution's kernel gradient on U-Net's layers: lax's, skinjax's
padded one (skinjax/models/conv2d.py) and TensorFlow's Conv2DBackpropFilter.

  python benchmarks/conv_kernel_grad.py --base_width=16 --image_size=224 --batch_size=2

Each layer of U-Net at --base_width and --image_size (every distinct input/output width
and side) is timed jitted, as the median of protocol.time_steps' windows, and skinjax's
gradient is checked against lax's. TensorFlow's column is left out where it is not
installed. Prints a markdown table and a total over U-Net's layers (each layer as often
as U-Net has it).
"""

import collections

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import protocol
from skinjax.models import conv2d

FLAGS = flags.FLAGS
flags.DEFINE_integer('base_width', 16, "U-Net's first block width.")
flags.DEFINE_integer('image_size', 224, 'U-Net input side.')
flags.DEFINE_integer('batch_size', 2, 'Batch of every timed layer.')
flags.DEFINE_integer('depth', 4, "U-Net's down-sampling steps.")
flags.DEFINE_integer('windows', 5, 'Timed windows per measurement (median reported).')
flags.DEFINE_float('min_window_s', 0.5, 'Shortest timed window, in seconds.')

NHWC = ('NHWC', 'HWIO', 'NHWC')


def unet_layers(base: int, size: int, depth: int) -> collections.Counter:
  """(side, C_in, C_out) of every 3x3 convolution in U-Net, with how often each occurs."""
  layers = collections.Counter()
  widths = [base * 2**level for level in range(depth + 1)]
  in_width = 3
  for level, width in enumerate(widths):  # encoder blocks, then the bottleneck
    side = size // 2**level
    layers[(side, in_width, width)] += 1
    layers[(side, width, width)] += 1
    in_width = width
  for level in reversed(range(depth)):  # decoder: the skip concatenated to the upsampling
    side, width = size // 2**level, widths[level]
    layers[(side, 2 * width, width)] += 1
    layers[(side, width, width)] += 1
  return layers


def _time(fn, *args):
  jitted = jax.jit(fn)
  timing = protocol.time_steps(lambda: jitted(*args), jax.block_until_ready, 1,
                               windows=FLAGS.windows, min_window_s=FLAGS.min_window_s)
  return timing.step_s * 1e3


def _tf_timer():
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None

  def timer(x, kernel_shape, grad):
    x, grad = tf.constant(np.asarray(x)), tf.constant(np.asarray(grad))
    fn = tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=list(kernel_shape), out_backprop=grad, strides=[1, 1, 1, 1],
        padding='SAME'))
    timing = protocol.time_steps(fn, lambda out: out.numpy(), 1, windows=FLAGS.windows,
                                 min_window_s=FLAGS.min_window_s)
    return timing.step_s * 1e3
  return timer


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  tf_timer = _tf_timer()
  print(f'3x3 SAME kernel gradient, batch {FLAGS.batch_size}, U-Net width {FLAGS.base_width} '
        f'@{FLAGS.image_size}, {jax.devices()[0].device_kind}, jax {jax.__version__}\n')
  print('| layer | count | lax ms | padded ms | TensorFlow ms | lax / padded |')
  print('| --- | ---: | ---: | ---: | ---: | ---: |')
  totals = collections.Counter()
  for (side, c_in, c_out), count in sorted(unet_layers(FLAGS.base_width, FLAGS.image_size,
                                                       FLAGS.depth).items(), reverse=True):
    x = jnp.asarray(rng.normal(size=(FLAGS.batch_size, side, side, c_in)), jnp.float32)
    grad = jnp.asarray(rng.normal(size=(FLAGS.batch_size, side, side, c_out)), jnp.float32)
    shape = (3, 3, c_in, c_out)
    lax_grad = lambda x, g: jax.vjp(lambda k: lax.conv_general_dilated(
        x, k, (1, 1), 'SAME', dimension_numbers=NHWC), jnp.zeros(shape))[1](g)[0]
    padded = lambda x, g: conv2d.kernel_grad_padded(x, g, shape, (1, 1), 'SAME')
    np.testing.assert_allclose(jax.jit(padded)(x, grad), jax.jit(lax_grad)(x, grad),
                               rtol=1e-3, atol=1e-2)
    row = {'lax': _time(lax_grad, x, grad), 'padded': _time(padded, x, grad)}
    if tf_timer:
      row['tf'] = tf_timer(x, shape, grad)
    for key, ms in row.items():
      totals[key] += count * ms
    tf_ms = f'{row["tf"]:.2f}' if 'tf' in row else '-'
    print(f'| {side}x{side} {c_in}->{c_out} | {count} | {row["lax"]:.2f} | '
          f'{row["padded"]:.2f} | {tf_ms} | {row["lax"] / row["padded"]:.2f}x |', flush=True)
  tf_total = f'{totals["tf"]:.1f}' if tf_timer else '-'
  print(f'| U-Net total | | {totals["lax"]:.1f} | {totals["padded"]:.1f} | {tf_total} | '
        f'{totals["lax"] / totals["padded"]:.2f}x |')


if __name__ == '__main__':
  app.run(main)
