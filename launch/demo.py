r"""The README's main job: build the datasets, train DeepConvNet and a U-Net briefly with
paper 1's configs, evaluate them on the test splits and write their reports.

Without --manual_dir it writes synthetic HAM10000 and PH2 layouts (procedurally drawn
lesions with exact masks) and builds them with the real TFDS builders; with --manual_dir
it builds the folders found there (HAM10000/, PH2/ or PH2-sample/).

  python launch/demo.py --workdir=runs/demo
  python launch/demo.py --workdir=runs/real --manual_dir=../shared/data
"""

import os
import time

from absl import app, flags, logging
import tensorflow_datasets as tfds

import common_flags
from skinjax.data import synthetic
from skinjax.train import experiment, trainer

flags.DEFINE_integer('classifier_epochs', 3, 'DeepConvNet epochs (paper 1: 20).')
flags.DEFINE_integer('segmenter_epochs', 4, 'U-Net epochs (paper 1: 100).')
flags.DEFINE_string('segmenter', 'unet_small', 'Registry name of the U-Net variant.')
flags.DEFINE_integer('segmentation_size', 64, 'U-Net image side (paper 1: 224).')
flags.DEFINE_integer('batch_size', 16, 'Global batch size (a multiple of the device count).')
FLAGS = flags.FLAGS

DATASET_FOLDERS = {'ham10000': ('HAM10000',), 'ph2': ('PH2', 'PH2-sample')}


def manual_dirs(workdir: str) -> dict:
  manual_dir = common_flags.MANUAL_DIR.value
  if manual_dir is None:
    root = os.path.join(workdir, 'synthetic')
    logging.info('demo: no --manual_dir, so synthetic layouts in %s', root)
    return {name: str(path) for name, path in synthetic.ensure_written(root).items()}
  found = {}
  for name, folders in DATASET_FOLDERS.items():
    for folder in folders:
      if os.path.isdir(os.path.join(manual_dir, folder)):
        found[name] = os.path.join(manual_dir, folder)
        break
    else:
      common_flags.fail(f'--manual_dir={manual_dir}: no {" or ".join(folders)}/ folder '
                        f'for {name}')
  return found


def configs():
  classifier = common_flags.apply_to(common_flags.load_config('deepconvnet_ham10000'))
  segmenter = common_flags.apply_to(common_flags.load_config('unet_ph2'))
  with classifier.unlocked(), segmenter.unlocked():
    classifier.phases[0].epochs = FLAGS.classifier_epochs
    segmenter.phases[0].epochs = FLAGS.segmenter_epochs
    segmenter.model = FLAGS.segmenter
    segmenter.image_size = FLAGS.segmentation_size
    for config in (classifier, segmenter):
      config.batch_size = config.eval_batch_size = FLAGS.batch_size
  return classifier, segmenter


def main(argv):
  if len(argv) > 1:
    common_flags.fail(f'unexpected arguments {argv[1:]}')
  logging.get_absl_handler().addFilter(lambda record: 'orbax' not in record.pathname)
  tfds.disable_progress_bar()
  workdir = common_flags.WORKDIR.value or 'runs/demo'
  classifier, segmenter = configs()
  runs = {'deepconvnet': (classifier, 'ham10000'), 'unet': (segmenter, 'ph2')}
  try:
    for name, (config, _) in runs.items():
      experiment.check(config, workdir=os.path.join(workdir, name))
  except experiment.ConfigError as error:
    common_flags.fail(str(error))
  sources = manual_dirs(workdir)
  data_dir = common_flags.DATA_DIR.value or os.path.join(workdir, 'tfds')
  start = time.perf_counter()
  for name, (config, dataset) in runs.items():
    metrics = trainer.train_and_evaluate(config, os.path.join(workdir, name), data_dir=data_dir,
                                         manual_dir=sources[dataset])
    keys = ('accuracy', 'balanced_accuracy', 'f1_macro') if config.task == 'classification' \
        else ('dice', 'iou', 'mean_iou')
    print(f'{name} on {dataset}: test ' + ', '.join(f'{k} {metrics[k]:.3f}' for k in keys)
          + f'; report in {os.path.join(workdir, name, "report", "test")}')
  print(f'demo done in {time.perf_counter() - start:.0f}s; reports under '
        f'{os.path.abspath(workdir)}/*/report/test/ (report.json and PNG figures)')


if __name__ == '__main__':
  app.run(main)
