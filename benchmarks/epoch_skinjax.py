r"""Worker: the skinjax side of the epoch row. launch/train.py trains paper 1's DeepConvNet
configuration on HAM10000 for --epochs epochs; prints one ROW line with each epoch's times.

  python benchmarks/epoch_skinjax.py --manual_dir=DOWNLOAD --data_dir=TFDS_DIR

First the dataset is built in --data_dir and every split decoded into skinjax's array
cache, here (so the launcher reads the cache: the decode is not in its times). Then the
launcher runs as a user runs it, in a process of its own with a temporary workdir, the
persistent compilation cache off (SKINJAX_COMPILATION_CACHE=0) so that epoch 1 compiles
as a first run does. The times are the trainer's own, from the run's metrics.jsonl:
`seconds` (the epoch's training steps, augmentation and balancing included) and
`validation_seconds` (the validation pass that ends the epoch).
"""

import os
import re
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import epoch_data
import protocol

FLAGS = flags.FLAGS
flags.DEFINE_string('manual_dir', None, 'The HAM10000 download (epoch_data.sources).')
flags.DEFINE_string('data_dir', None, 'TFDS data folder the dataset is built in.')
flags.DEFINE_integer('epochs', 2, 'Epochs to train.', lower_bound=1)
flags.DEFINE_integer('launcher_timeout_s', 3600, 'Longest the launcher may run.')
flags.mark_flags_as_required(['manual_dir', 'data_dir'])

# jax_startup's platform line: `JAX 0.10.2 on gpu: 1 device (NVIDIA H200), process 1 of 1`.
PLATFORM_LINE = re.compile(r'JAX \S+ on (\w+): (\d+) devices? \((.*)\), process')


def per_epoch(history: list[dict], batch_size: int) -> list[dict]:
  """Each epoch record's times: training images are its steps times the batch."""
  rows, step = [], 0
  for record in history:
    images = (record['step'] - step) * batch_size
    step = record['step']
    rows.append({'epoch': record['epoch'] + 1, 'train_s': record['seconds'],
                 'validation_s': record.get('validation_seconds'), 'images': images,
                 'images_per_s': record['images_per_second'],
                 'train_accuracy': record['train'].get('accuracy'),
                 'validation_accuracy': record['validation'].get('accuracy')})
  return rows


def main(argv):
  del argv
  import jax
  from skinjax.train.metric_writer import read_history
  spec = epoch_data.run_spec(FLAGS.epochs)
  data, prepare_s = epoch_data.prepare(spec, manual_dir=FLAGS.manual_dir,
                                       data_dir=FLAGS.data_dir)
  with tempfile.TemporaryDirectory(prefix='epoch_skinjax_') as workdir:
    command = [sys.executable, os.path.join(epoch_data.REPO, 'launch', 'train.py'),
               f'--workdir={workdir}', f'--data_dir={FLAGS.data_dir}',
               f'--manual_dir={FLAGS.manual_dir}', *epoch_data.launcher_overrides(FLAGS.epochs)]
    env = dict(os.environ, SKINJAX_COMPILATION_CACHE='0')
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=FLAGS.launcher_timeout_s)
    launcher_s = time.perf_counter() - start
    if done.returncode != 0:
      tail = ' '.join(done.stderr.strip().splitlines()[-3:])[-600:]
      sys.exit(f'launch/train.py exited {done.returncode}: {tail}')
    history = read_history(workdir)
  found = PLATFORM_LINE.search(done.stderr)
  protocol.emit({
      'bench': 'epoch', 'framework': 'skinjax', 'model': spec.model,
      'image_size': spec.image_size, 'batch_size': spec.batch_size,
      'eval_batch_size': spec.eval_batch_size, 'parallel': spec.parallel,
      'learning_rate': spec.phases[0].learning_rate,
      'augment': 'skinjax.augment in the jitted step (ImageDataGenerator\'s maps)',
      'dataset': data.dataset_full_name, 'split_protocol': spec.split_protocol,
      'balance': spec.balance, 'train_examples': len(data.train_indices),
      'validation_examples': len(data.validation),
      'per_epoch': per_epoch(history, spec.batch_size),
      'prepare_s': prepare_s, 'launcher_s': launcher_s,
      'platform': found.group(1) if found else None,
      'devices': int(found.group(2)) if found else None,
      'device_kind': found.group(3) if found else None,
      'command': ' '.join(command[1:]),
      'versions': {'jax': jax.__version__}})


if __name__ == '__main__':
  app.run(main)
