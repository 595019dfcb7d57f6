r"""Input pipeline throughput: HAM10000 build time, then DeepConvNet training images/s with
device-resident data vs the host-streaming path, measured in one run.

  python benchmarks/input_pipeline.py --manual_dir=../shared/data/HAM10000

Each placement trains paper 1's configuration (28x28, batch 64, augmentation, balanced
train split), timed as every row of the throughput suite is (benchmarks/protocol.py).
throughput.py measures the same two placements on random data; this one adds the real
HAM10000 build and its class balance.
"""

import itertools
import tempfile
import time

from absl import app, flags
import jax
import numpy as np
import tensorflow_datasets as tfds

import protocol
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
flags.DEFINE_integer('warmup', 50, 'Untimed warm-up steps after the first.')
flags.DEFINE_float('min_window_s', 2.0, 'Shortest timed window, in seconds.')
flags.DEFINE_integer('windows', 5, 'Timed windows per placement.')
flags.DEFINE_enum('parallel', 'jit', parallel_lib.PARALLEL_MODES, 'Data-parallel wrapper.')


def images_per_second(placement, train, indices):
  """Median images/s and the windows' rates (benchmarks/protocol.py's timing)."""
  model, task = create_model('deepconvnet'), ClassificationTask(7)
  parallel = parallel_lib.make_parallel(
      FLAGS.parallel, model, task,
      preprocess=pipeline.Preprocess(augment=augment.PAPER1_CLASSIFICATION))
  feed = pipeline.InputPipeline(train, parallel, placement=placement)
  carry = {'state': parallel.replicate(create_train_state(
               jax.random.key(0), model, (1, 28, 28, 3), keras_adam(1e-3))),
           'metrics': parallel.replicate(task.empty_metrics())}
  batches = itertools.chain.from_iterable(
      feed.batches(pipeline.train_order(indices, FLAGS.batch_size, epoch=epoch, seed=0))
      for epoch in itertools.count())
  rng = jax.random.key(1)

  def step():
    carry['state'], carry['metrics'] = parallel.train_step(
        carry['state'], carry['metrics'], next(batches), rng, feed.data)
    return carry['metrics']

  timing = protocol.time_steps(step, jax.block_until_ready, FLAGS.batch_size,
                               windows=FLAGS.windows, warmup=FLAGS.warmup,
                               min_window_s=FLAGS.min_window_s)
  return timing.images_per_s, timing.window_images_per_s


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
