r"""Input pipeline throughput: HAM10000 build time, then DeepConvNet training images/s with
device-resident data vs the host-streaming path, measured in one run.

  python benchmarks/input_pipeline.py --manual_dir=../shared/data/HAM10000

Each placement trains paper 1's configuration (28x28, batch 64, augmentation, balanced
train split); images/s is the median of --windows timed windows after a warm-up, each
window ending in block_until_ready.
"""

import statistics
import tempfile
import time

from absl import app, flags
import jax
import numpy as np
import tensorflow_datasets as tfds

from skinjax import augment
from skinjax.data import arrays as arrays_lib, balance, builders, pipeline
from skinjax.models import create_model
from skinjax.train import parallel as parallel_lib
from skinjax.train.state import create_train_state, keras_adam
from skinjax.train.tasks import ClassificationTask

FLAGS = flags.FLAGS
flags.DEFINE_string('manual_dir', '../shared/data/HAM10000', 'The HAM10000 download.')
flags.DEFINE_string('data_dir', None, 'TFDS data dir (default: a fresh temporary one, so '
                    'the build is timed).')
flags.DEFINE_integer('batch_size', 64, 'Global batch size.')
flags.DEFINE_integer('window_steps', 50, 'Steps per timed window.')
flags.DEFINE_integer('windows', 5, 'Timed windows per placement.')
flags.DEFINE_enum('parallel', 'jit', parallel_lib.PARALLEL_MODES, 'Data-parallel wrapper.')


def images_per_second(placement, train, indices):
  model, task = create_model('deepconvnet'), ClassificationTask(7)
  parallel = parallel_lib.make_parallel(
      FLAGS.parallel, model, task,
      preprocess=pipeline.Preprocess(augment=augment.PAPER1_CLASSIFICATION))
  feed = pipeline.InputPipeline(train, parallel, placement=placement)
  state = parallel.replicate(create_train_state(jax.random.key(0), model, (1, 28, 28, 3),
                                                keras_adam(1e-3)))
  metrics = parallel.replicate(task.empty_metrics())
  steps = FLAGS.window_steps * (FLAGS.windows + 1)
  order = pipeline.train_order(np.resize(indices, steps * FLAGS.batch_size), FLAGS.batch_size,
                               epoch=0, seed=0)
  batches = feed.batches(order)
  rng = jax.random.key(1)
  rates = []
  for window in range(FLAGS.windows + 1):  # window 0 warms up (compilation)
    start = time.perf_counter()
    for _ in range(FLAGS.window_steps):
      state, metrics = parallel.train_step(state, metrics, next(batches), rng, feed.data)
    jax.block_until_ready((state, metrics))
    if window:
      rates.append(FLAGS.window_steps * FLAGS.batch_size / (time.perf_counter() - start))
  return statistics.median(rates), rates


def main(argv):
  del argv
  tfds.disable_progress_bar()
  data_dir = FLAGS.data_dir or tempfile.mkdtemp(prefix='ham10000_tfds_')
  start = time.perf_counter()
  builder = builders.prepare('ham10000', data_dir=data_dir, manual_dir=FLAGS.manual_dir,
                             config='images')
  built = time.perf_counter() - start
  start = time.perf_counter()
  train = arrays_lib.load_split(builder, 'train', 28)
  loaded = time.perf_counter() - start
  print(f'HAM10000 build (images config, {builder.info.splits.total_num_examples} examples): '
        f'{built:.1f}s; train split decoded and resized to 28x28: {loaded:.1f}s')
  indices = balance.duplicate_by_class(np.arange(len(train)), train.labels,
                                       builder.info.features['label'].names)
  results = {placement: images_per_second(placement, train, indices)
             for placement in ('device', 'stream')}
  print(f'DeepConvNet train step, batch {FLAGS.batch_size}, {jax.device_count()} '
        f'{jax.default_backend()} device(s), --parallel={FLAGS.parallel}:')
  for placement, (median, rates) in results.items():
    print(f'  {placement:>6}: {median:8.0f} images/s (windows: '
          f'{", ".join(f"{r:.0f}" for r in rates)})')
  print(f'  device / stream: {results["device"][0] / results["stream"][0]:.2f}x')


if __name__ == '__main__':
  app.run(main)
