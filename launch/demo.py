r"""The README's main job: train DeepConvNet and U-Net briefly and write checkpoints.

Until the dataset builders land, both models train on generated arrays: images whose
colour depends on the class, and disc-shaped lesions with their exact masks.

  python launch/demo.py --workdir=runs/demo
"""

import os
import time

from absl import app, flags, logging
import jax
import numpy as np

from skinjax.models import create_model
from skinjax.train import checkpoint, evaluate, loop, parallel as parallel_lib
from skinjax.train.state import create_train_state, keras_adam
from skinjax.train.tasks import ClassificationTask, SegmentationTask

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', 'runs/demo', 'Where checkpoints are written.')
flags.DEFINE_integer('steps', 20, 'Train steps per model.')
flags.DEFINE_integer('batch_size', 16, 'Global batch size (a multiple of the device count).')
flags.DEFINE_enum('parallel', 'pmap', parallel_lib.PARALLEL_MODES, 'Data-parallel wrapper.')
flags.DEFINE_string('segmenter', 'unet_small', 'Registry name of the U-Net variant.')
flags.DEFINE_integer('segmentation_size', 64, 'Image side for the U-Net (multiple of 16).')
flags.DEFINE_integer('seed', 0, 'Seed of the generated arrays and of the initialisation.')


def generated_classification_batches(rng, steps, batch_size, num_classes=7, size=28):
  """Noise images whose mean colour encodes the label (the same colours on every call)."""
  colours = np.random.default_rng(1234).uniform(-1, 1, (num_classes, 3)).astype(np.float32)
  for _ in range(steps):
    labels = rng.integers(0, num_classes, batch_size)
    noise = rng.normal(0, 0.5, (batch_size, size, size, 3)).astype(np.float32)
    yield {'image': noise + colours[labels][:, None, None, :], 'label': labels.astype(np.int32)}


def generated_segmentation_batches(rng, steps, batch_size, size):
  """Dark discs of random centre and radius on a noisy light background."""
  yy, xx = np.mgrid[:size, :size]
  for _ in range(steps):
    centres = rng.uniform(0.3, 0.7, (batch_size, 2, 1, 1)) * size
    radii = rng.uniform(0.1, 0.3, (batch_size, 1, 1)) * size
    masks = (yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2 < radii**2
    images = np.where(masks[..., None], -0.8, 0.6) + rng.normal(0, 0.3, masks.shape + (3,))
    yield {'image': images.astype(np.float32), 'mask': masks[..., None].astype(np.float32)}


def train_one(name, model, task, input_shape, learning_rate, train_batches, eval_batches,
              workdir, config):
  parallel = parallel_lib.make_parallel(FLAGS.parallel, model, task)
  parallel_lib.check_batch_size(FLAGS.batch_size, parallel.num_devices,
                                what='--batch_size')
  state = create_train_state(jax.random.key(FLAGS.seed), model, input_shape,
                             keras_adam(learning_rate))
  start = time.perf_counter()
  state, train_metrics = loop.fit(parallel, parallel.replicate(state), task, train_batches,
                                  jax.random.key(FLAGS.seed + 1))
  seconds = time.perf_counter() - start
  eval_metrics = evaluate.evaluate(parallel, state, task, eval_batches, FLAGS.batch_size)
  directory = os.path.join(workdir, name, 'checkpoints')
  checkpointer = checkpoint.Checkpointer(directory)
  host_state = parallel.fetch(state)
  checkpointer.save(int(host_state.step), host_state, config)
  checkpointer.close()
  logging.info('%s: %d steps in %.1fs on %d %s device(s) (%s)', name, FLAGS.steps, seconds,
               parallel.num_devices, jax.default_backend(), FLAGS.parallel)
  return train_metrics, eval_metrics, directory


def main(argv):
  del argv
  # Orbax logs every step of every save at INFO; keep the demo's own lines readable.
  logging.get_absl_handler().addFilter(lambda record: 'orbax' not in record.pathname)
  rng = np.random.default_rng(FLAGS.seed)
  logging.info('demo: generated arrays (the dataset builders are not wired in yet)')
  train_metrics, eval_metrics, directory = train_one(
      'deepconvnet', create_model('deepconvnet'), ClassificationTask(7), (1, 28, 28, 3), 1e-3,
      generated_classification_batches(rng, FLAGS.steps, FLAGS.batch_size),
      generated_classification_batches(rng, 2, FLAGS.batch_size),
      FLAGS.workdir, {'model': 'deepconvnet', 'image_size': 28, 'num_classes': 7})
  print(f'DeepConvNet: train loss {train_metrics["loss"]:.3f}, train accuracy '
        f'{train_metrics["accuracy"]:.3f}, eval accuracy {eval_metrics["accuracy"]:.3f}; '
        f'checkpoint in {directory}')
  size = FLAGS.segmentation_size
  train_metrics, eval_metrics, directory = train_one(
      'unet', create_model(FLAGS.segmenter), SegmentationTask('jaccard'), (1, size, size, 3),
      3e-3, generated_segmentation_batches(rng, FLAGS.steps, FLAGS.batch_size, size),
      generated_segmentation_batches(rng, 2, FLAGS.batch_size, size),
      FLAGS.workdir, {'model': FLAGS.segmenter, 'image_size': size})
  # Eval mode normalises with BatchNorm's running statistics, which Keras' momentum of
  # 0.99 moves slowly: after a few steps, eval scores trail the train scores.
  print(f'U-Net: train Jaccard loss {train_metrics["loss"]:.3f}, train Dice '
        f'{train_metrics["dice"]:.3f}, eval Dice {eval_metrics["dice"]:.3f}, eval mean IoU '
        f'{eval_metrics["mean_iou"]:.3f}; checkpoint in {directory}')


if __name__ == '__main__':
  app.run(main)
