r"""Worker: times the Keras 3 (TensorFlow backend) baseline of one model; prints ROW lines.

  python benchmarks/keras_step.py --model=efficientnetv2_b3_skin --image_size=300 \
      --batch_size=8 --modes=train,eval

The papers' framework, run as they ran it: `model.compile` with Adam, then
`train_on_batch` / `test_on_batch` on a batch already on the device (each call returns
host numbers, so every step ends synchronised). Models: benchmarks/keras_models.py.
When Keras or TensorFlow cannot be imported, prints one row saying why and exits 0.
--jit_compile=auto turns XLA off on the CPU (where XLA ran B3 3-6x slower than
TensorFlow's own kernels) and leaves Keras' default elsewhere.
"""

import os
import platform
import time

# Keras reads its backend once, at import.
os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

import protocol  # noqa: E402
import suite  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'deepconvnet', 'Name in benchmarks/suite.py BENCH_MODELS.')
flags.DEFINE_integer('image_size', 28, 'Image side.')
flags.DEFINE_integer('batch_size', 64, 'Batch size.')
flags.DEFINE_list('modes', ['train'], 'train and/or eval.')
flags.DEFINE_enum('dtype', 'float32', suite.DTYPES,
                  'float32, or bfloat16 as Keras mixed precision (mixed_bfloat16).')
flags.DEFINE_enum('jit_compile', 'auto', ['auto', 'true', 'false'],
                  'XLA for the Keras step (auto: off on the CPU, Keras default elsewhere).')
flags.DEFINE_integer('windows', 5, 'Timed windows.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps after the first.')
flags.DEFINE_float('min_window_s', 0.5, 'Shortest timed window, in seconds.')


def jaccard_loss(masks, logits):
  """Soft Jaccard loss on sigmoid probabilities, as skinjax's SegmentationTask('jaccard')."""
  import keras
  ops = keras.ops
  probs = ops.sigmoid(logits)
  masks = ops.cast(masks, probs.dtype)
  intersection = ops.sum(masks * probs, axis=(1, 2, 3))
  union = ops.sum(masks + probs, axis=(1, 2, 3)) - intersection
  return 1.0 - (intersection + 1.0) / (union + 1.0)


def main(argv):
  del argv
  try:
    import keras
    import tensorflow as tf
  except Exception as error:  # e.g. a GPU image without TensorFlow
    protocol.emit({'framework': 'keras', 'model': FLAGS.model, 'image_size': FLAGS.image_size,
                   'batch_size': FLAGS.batch_size,
                   'skipped': f'keras/tensorflow not importable: {type(error).__name__}: {error}'})
    return
  import keras_models

  if FLAGS.model not in suite.BENCH_MODELS:
    raise ValueError(f'--model: {FLAGS.model!r} is not one of {sorted(suite.BENCH_MODELS)}')
  spec = suite.BENCH_MODELS[FLAGS.model]
  gpus = tf.config.list_physical_devices('GPU')
  device = '/GPU:0' if gpus else '/CPU:0'
  jit = {'auto': 'auto' if gpus else False, 'true': True, 'false': False}[FLAGS.jit_compile]
  if FLAGS.dtype == 'bfloat16':
    keras.mixed_precision.set_global_policy('mixed_bfloat16')
  size, batch_size = FLAGS.image_size, FLAGS.batch_size
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255 if not spec.scale_inputs else 1,
                       (batch_size, size, size, 3)).astype(np.float32)
  if spec.task == 'classification':
    targets = rng.integers(0, spec.num_classes, batch_size).astype(np.int32)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    metrics = ['accuracy']
  else:
    targets = rng.integers(0, 2, (batch_size, size, size, 1)).astype(np.float32)
    loss, metrics = jaccard_loss, []
  with tf.device(device):
    model = keras_models.build(spec.keras or FLAGS.model, size)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, metrics=metrics,
                  jit_compile=jit)
    x, y = tf.identity(images), tf.identity(targets)  # resident on the device
    for mode in FLAGS.modes:
      if mode not in suite.MODES:
        raise ValueError(f'--modes: {mode!r} is not one of {suite.MODES}')
      if gpus:
        tf.config.experimental.reset_memory_stats('GPU:0')
      step = ((lambda: model.train_on_batch(x, y)) if mode == 'train'
              else (lambda: model.test_on_batch(x, y)))
      timing = protocol.time_steps(step, lambda out: None, batch_size,
                                   windows=FLAGS.windows, warmup=FLAGS.warmup,
                                   min_window_s=FLAGS.min_window_s)
      peak = tf.config.experimental.get_memory_info('GPU:0')['peak'] if gpus else None
      protocol.emit({
          'framework': 'keras', 'variant': 'xla' if model.jit_compile else 'tf',
          'model': FLAGS.model, 'image_size': size, 'batch_size': batch_size, 'mode': mode,
          'dtype': FLAGS.dtype, 'devices': 1, 'data': 'step',
          'images_per_s': timing.images_per_s, 'step_s': timing.step_s,
          'first_step_s': timing.first_step_s, 'steps_per_window': timing.steps_per_window,
          'window_images_per_s': timing.window_images_per_s, 'peak_bytes': peak,
          'platform': 'gpu' if gpus else 'cpu',
          'versions': {'keras': keras.__version__, 'tensorflow': tf.__version__,
                       'python': platform.python_version()},
          'worker_s': time.perf_counter() - START})


START = time.perf_counter()

if __name__ == '__main__':
  app.run(main)
