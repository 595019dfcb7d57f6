r"""Times each dense convolution of a model, forward and both gradients, in skinjax (jitted)
and in TensorFlow (a tf.function), layer by layer.

  python benchmarks/conv_layers.py --model=efficientnetv2_b3_skin --image_size=224 \
      --batch_size=8 --kernel_sizes=3

The layers are the model's own: every `nn.Conv` call of the model at --image_size (the
depthwise convolutions, grouped, are benchmarks/depthwise.py's; U-Net's transposed
2x2 upsampling ones are not timed), found by tracing the
model's initialisation; each distinct (input shape, width, kernel, stride) is one row,
with how often the model has it. Each side computes the convolution, a loss sum(y**2)
(so the output's gradient comes from an elementwise op, as in a step) and the input and
kernel gradients; skinjax uses the convolution the model's layer uses (U-Net's
skinjax.models.conv2d, lax's elsewhere). Medians of protocol.time_steps' windows. Prints
a markdown table and totals weighted by the counts, per kernel side and over all;
TensorFlow's column is left out where it is not installed. Not part of `make bench`.
"""

import collections

from absl import app, flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import protocol
from skinjax.models import MODELS, create_model, task_of

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'efficientnetv2_b3_skin', 'A model registry name.')
flags.DEFINE_integer('image_size', 224, 'Model input side.')
flags.DEFINE_integer('batch_size', 8, 'Batch of every timed layer.')
flags.DEFINE_list('kernel_sizes', [], 'Only convolutions with these kernel sides (empty: all).')
flags.DEFINE_integer('num_classes', 9, 'Classes, for models that take them.')
flags.DEFINE_integer('windows', 5, 'Timed windows per measurement (median reported).')
flags.DEFINE_float('min_window_s', 0.5, 'Shortest timed window, in seconds.')

NHWC = ('NHWC', 'HWIO', 'NHWC')


def model_convolutions(model, image_size: int, batch_size: int) -> collections.Counter:
  """(input shape, features, kernel side, stride, padding, conv fn) -> count for every dense
  nn.Conv the model calls."""
  layers = collections.Counter()

  def record(next_fun, args, kwargs, context):
    module = context.module
    if (isinstance(module, nn.Conv) and context.method_name == '__call__'
        and module.feature_group_count == 1 and len(module.kernel_size) == 2):
      strides = module.strides if module.strides is not None else 1
      stride = strides[0] if isinstance(strides, (tuple, list)) else strides
      padding = module.padding if isinstance(module.padding, str) else tuple(
          map(tuple, module.padding))
      layers[(tuple(args[0].shape), module.features, module.kernel_size[0], stride, padding,
              module.conv_general_dilated or lax.conv_general_dilated)] += 1
    return next_fun(*args, **kwargs)

  images = jnp.zeros((batch_size, image_size, image_size, 3), jnp.float32)
  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
  return layers


def _time(fn, output):
  timing = protocol.time_steps(fn, output, 1, windows=FLAGS.windows,
                               min_window_s=FLAGS.min_window_s)
  return timing.step_s * 1e3


def skinjax_ms(x, kernel, stride, padding, conv) -> float:
  def loss(x, kernel):
    y = conv(x, kernel, (stride, stride), padding, dimension_numbers=NHWC)
    return jnp.sum(y * y)
  step = jax.jit(jax.grad(loss, (0, 1)))
  return _time(lambda: step(x, kernel), jax.block_until_ready)


def _tf_timer():
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None

  def timer(x, kernel, stride, padding):
    x, kernel = tf.Variable(np.asarray(x)), tf.Variable(np.asarray(kernel))

    @tf.function
    def step():
      with tf.GradientTape() as tape:
        y = tf.nn.conv2d(x, kernel, stride, padding)
        loss = tf.reduce_sum(y * y)
      return tape.gradient(loss, [x, kernel])
    return _time(step, lambda grads: [g.numpy() for g in grads])
  return timer


def main(argv):
  del argv
  if FLAGS.model not in MODELS:
    raise app.UsageError(f'--model={FLAGS.model!r}: expected one of {", ".join(sorted(MODELS))}')
  try:
    kernel_sizes = {int(k) for k in FLAGS.kernel_sizes}
  except ValueError:
    raise app.UsageError(f'--kernel_sizes={",".join(FLAGS.kernel_sizes)}: expected integers')
  classifies = task_of(FLAGS.model) == 'classification'
  model = create_model(FLAGS.model, **({'num_classes': FLAGS.num_classes} if classifies else {}))
  layers = model_convolutions(model, FLAGS.image_size, FLAGS.batch_size)
  rng = np.random.default_rng(0)
  tf_timer = _tf_timer()
  print(f'{FLAGS.model} @{FLAGS.image_size}, batch {FLAGS.batch_size}: each dense convolution '
        f'forward + input and kernel gradients, {jax.devices()[0].device_kind}, '
        f'jax {jax.__version__}\n')
  print('| input | kernel | stride | -> width | count | skinjax ms | TensorFlow ms | '
        'skinjax speed / TF |')
  print('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  totals = collections.Counter()
  order = lambda item: -np.prod(item[0][0]) * item[0][1] * item[0][2]**2 / item[0][3]**2
  for (shape, features, side, stride, padding, conv), count in sorted(layers.items(), key=order):
    if kernel_sizes and side not in kernel_sizes:
      continue
    if not isinstance(padding, str):
      continue  # explicit pads: TensorFlow's conv2d takes them only as NHWC lists; none here
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(side, side, shape[-1], features)) * 0.1, jnp.float32)
    row = {'skinjax': skinjax_ms(x, kernel, stride, padding, conv)}
    if tf_timer:
      row['tf'] = tf_timer(x, kernel, stride, padding)
    for key, ms in row.items():
      totals[key] += count * ms
      totals[(side, key)] += count * ms
    tf_ms, ratio = ((f'{row["tf"]:.2f}', f'{row["tf"] / row["skinjax"]:.2f}x') if tf_timer
                    else ('-', '-'))
    print(f'| {"x".join(map(str, shape))} | {side}x{side} | {stride} | {features} | {count} | '
          f'{row["skinjax"]:.2f} | {tf_ms} | {ratio} |', flush=True)
  sides = sorted({key[0] for key in totals if isinstance(key, tuple)}, reverse=True)
  for label, prefix in [(f'{side}x{side}', (side,)) for side in sides] + [('', ())]:
    skinjax_total = totals[prefix + ('skinjax',) if prefix else 'skinjax']
    tf_total = totals[prefix + ('tf',) if prefix else 'tf']
    tf_cells = ((f'{tf_total:.1f}', f'{tf_total / skinjax_total:.2f}x') if tf_timer
                else ('-', '-'))
    print(f'| **total** (x count) | {label} | | | | {skinjax_total:.1f} | {tf_cells[0]} | '
          f'{tf_cells[1]} |')


if __name__ == '__main__':
  app.run(main)
