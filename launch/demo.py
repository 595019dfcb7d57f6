r"""The README's main job: build the datasets, train DeepConvNet and U-Net briefly, evaluate,
and write checkpoints.

Without --manual_dir it writes synthetic HAM10000 and PH2 layouts (procedurally drawn
lesions with exact masks) and builds them with the real TFDS builders; with --manual_dir
it builds the folders found there (HAM10000/, PH2/ or PH2-sample/).

  python launch/demo.py --workdir=runs/demo
  python launch/demo.py --workdir=runs/real --manual_dir=../shared/data
"""

import os
import time

from absl import app, flags, logging
import jax
import numpy as np
import tensorflow_datasets as tfds

from skinjax import augment
from skinjax.data import arrays as arrays_lib, balance, builders, pipeline, synthetic
from skinjax.models import create_model
from skinjax.train import checkpoint, evaluate, loop, parallel as parallel_lib
from skinjax.train.state import create_train_state, keras_adam
from skinjax.train.tasks import ClassificationTask, SegmentationTask

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', 'runs/demo', 'Where datasets, checkpoints and logs go.')
flags.DEFINE_string('manual_dir', None, 'Folder holding HAM10000/ and PH2/ (or PH2-sample/) '
                    'in the public layouts; default: synthetic layouts in the workdir.')
flags.DEFINE_integer('classifier_steps', 300, 'DeepConvNet train steps.')
flags.DEFINE_integer('segmenter_steps', 60, 'U-Net train steps.')
flags.DEFINE_integer('batch_size', 16, 'Global batch size (a multiple of the device count).')
flags.DEFINE_enum('parallel', 'pmap', parallel_lib.PARALLEL_MODES, 'Data-parallel wrapper.')
flags.DEFINE_enum('data_placement', 'auto', pipeline.PLACEMENTS,
                  'Device-resident data or host streaming (auto: by device memory).')
flags.DEFINE_string('segmenter', 'unet_small', 'Registry name of the U-Net variant.')
flags.DEFINE_integer('segmentation_size', 64, 'Image side for the U-Net (multiple of 16).')
flags.DEFINE_integer('seed', 0, 'Seed of the synthetic data, shuffling and initialisation.')

DATASET_FOLDERS = {'ham10000': ('HAM10000',), 'ph2': ('PH2', 'PH2-sample')}


def manual_dirs() -> dict:
  if FLAGS.manual_dir is None:
    root = os.path.join(FLAGS.workdir, 'synthetic')
    logging.info('demo: no --manual_dir, so synthetic layouts in %s', root)
    return synthetic.ensure_written(root, seed=FLAGS.seed)
  found = {}
  for name, folders in DATASET_FOLDERS.items():
    for folder in folders:
      if os.path.isdir(os.path.join(FLAGS.manual_dir, folder)):
        found[name] = os.path.join(FLAGS.manual_dir, folder)
        break
    else:
      raise app.UsageError(f'--manual_dir={FLAGS.manual_dir}: no {" or ".join(folders)}/ '
                           f'folder for {name}')
  return found


def train_and_evaluate(name, model, task, train, test, preprocess, learning_rate,
                       train_indices, steps, config):
  parallel = parallel_lib.make_parallel(FLAGS.parallel, model, task, preprocess=preprocess)
  parallel_lib.check_batch_size(FLAGS.batch_size, parallel.num_devices, what='--batch_size')
  size = train.images.shape[1]
  state = create_train_state(jax.random.key(FLAGS.seed), model, (1, size, size, 3),
                             keras_adam(learning_rate))
  state = parallel.replicate(state)
  train_input = pipeline.InputPipeline(train, parallel, placement=FLAGS.data_placement)
  steps_per_epoch = len(train_indices) // FLAGS.batch_size
  if steps_per_epoch == 0:
    raise app.UsageError(f'--batch_size={FLAGS.batch_size} is larger than the '
                         f'{len(train_indices)} training examples of {name}')
  order = np.concatenate([pipeline.train_order(train_indices, FLAGS.batch_size, epoch=epoch,
                                               seed=FLAGS.seed)
                          for epoch in range(-(-steps // steps_per_epoch))])[:steps]
  start = time.perf_counter()
  state, train_metrics = loop.fit(parallel, state, task, train_input.batches(order),
                                  jax.random.key(FLAGS.seed + 1), train_input.data, placed=True)
  seconds = time.perf_counter() - start
  test_input = pipeline.InputPipeline(test, parallel, placement=FLAGS.data_placement)
  test_metrics = evaluate.evaluate(
      parallel, state, task,
      test_input.batches(pipeline.eval_order(len(test), FLAGS.batch_size),
                         pad_to=FLAGS.batch_size), data=test_input.data)
  directory = os.path.join(FLAGS.workdir, name, 'checkpoints')
  checkpointer = checkpoint.Checkpointer(directory)
  host_state = parallel.fetch(state)
  checkpointer.save(int(host_state.step), host_state, config)
  checkpointer.close()
  logging.info('%s: %d steps in %.1fs (compilation included) on %d %s device(s), %s, data %s',
               name, steps, seconds, parallel.num_devices, jax.default_backend(),
               FLAGS.parallel, train_input.placement)
  return train_metrics, test_metrics, directory


def main(argv):
  del argv
  # Orbax logs every step of every save at INFO; keep the demo's own lines readable.
  logging.get_absl_handler().addFilter(lambda record: 'orbax' not in record.pathname)
  tfds.disable_progress_bar()
  data_dir = os.path.join(FLAGS.workdir, 'tfds')
  sources = manual_dirs()

  start = time.perf_counter()
  ham = builders.prepare('ham10000', data_dir=data_dir, manual_dir=str(sources['ham10000']),
                         config='images')
  class_names = ham.info.features['label'].names
  train = arrays_lib.load_split(ham, 'train', 28)
  test = arrays_lib.load_split(ham, 'test', 28)
  logging.info('HAM10000 ready in %.1fs: %d train, %d test images at 28x28',
               time.perf_counter() - start, len(train), len(test))
  balanced = balance.duplicate_by_class(np.arange(len(train)), train.labels, class_names)
  train_metrics, test_metrics, directory = train_and_evaluate(
      'deepconvnet', create_model('deepconvnet', num_classes=len(class_names)),
      ClassificationTask(len(class_names)), train, test,
      pipeline.Preprocess(augment=augment.PAPER1_CLASSIFICATION), 1e-3, balanced,
      FLAGS.classifier_steps, {'model': 'deepconvnet', 'image_size': 28, 'class_names': list(class_names),
       'dataset': ham.info.full_name})
  print(f'DeepConvNet on {ham.info.full_name}: train loss {train_metrics["loss"]:.3f}, '
        f'train accuracy {train_metrics["accuracy"]:.3f}; test accuracy '
        f'{test_metrics["accuracy"]:.3f}, balanced accuracy '
        f'{test_metrics["balanced_accuracy"]:.3f}; checkpoint in {directory}')

  size = FLAGS.segmentation_size
  ph2 = builders.prepare('ph2', data_dir=data_dir, manual_dir=str(sources['ph2']))
  train = arrays_lib.load_split(ph2, 'train', size)
  test = arrays_lib.load_split(ph2, 'test', size)
  train_metrics, test_metrics, directory = train_and_evaluate(
      'unet', create_model(FLAGS.segmenter), SegmentationTask('jaccard'), train, test,
      pipeline.Preprocess(augment=augment.PAPER1_SEGMENTATION), 3e-3, np.arange(len(train)),
      FLAGS.segmenter_steps, {'model': FLAGS.segmenter, 'image_size': size, 'dataset': ph2.info.full_name})
  # Eval mode normalises with BatchNorm's running statistics, which Keras' momentum of
  # 0.99 moves slowly: after a few steps, test scores trail the train scores.
  print(f'U-Net on {ph2.info.full_name}: train Jaccard loss {train_metrics["loss"]:.3f}, '
        f'train Dice {train_metrics["dice"]:.3f}; test Dice {test_metrics["dice"]:.3f}, '
        f'test mean IoU {test_metrics["mean_iou"]:.3f}; checkpoint in {directory}')


if __name__ == '__main__':
  app.run(main)
