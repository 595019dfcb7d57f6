r"""The README's main job: build the datasets, train DeepConvNet and a U-Net briefly with
paper 1's configs, score them on the test splits and write their reports.

Without --manual_dir it writes synthetic HAM10000 and PH2 layouts (procedurally drawn
lesions with exact masks) and builds them with the real TFDS builders; with --manual_dir
it builds the folders found there (HAM10000/, PH2/ or PH2-sample/).

  python launch/demo.py --workdir=runs/demo
  python launch/demo.py --workdir=runs/real --manual_dir=../shared/data
"""

import os
import time

from absl import flags, logging
import jax
import tensorflow_datasets as tfds

import common_flags
from skinjax.data import synthetic
from skinjax.data.image_files import DatasetFileError
from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.train import trainer
from skinjax.train.spec import ConfigError, RunSpec, check_layout



def define(values, argv):
  del argv
  common_flags.define_common(values)
  flags.DEFINE_integer('classifier_epochs', 3, 'DeepConvNet epochs (paper 1: 20).',
                       lower_bound=1, flag_values=values)
  flags.DEFINE_integer('segmenter_epochs', 4, 'U-Net epochs (paper 1: 100).', lower_bound=1,
                       flag_values=values)
  flags.DEFINE_string('segmenter', 'unet_small', 'Registry name of the U-Net variant.',
                      flag_values=values)
  flags.DEFINE_integer('segmentation_size', 64, 'U-Net image side (paper 1: 224).',
                       lower_bound=16, flag_values=values)
  flags.DEFINE_integer('batch_size', 16, 'Global batch size (a multiple of the device '
                       'count).', lower_bound=1, flag_values=values)

DATASET_FOLDERS = {'ham10000': ('HAM10000',), 'ph2': ('PH2', 'PH2-sample')}


def manual_dirs(manual_dir: str | None, workdir: str) -> dict:
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


def specs(values) -> dict[str, RunSpec]:
  """Paper 1's two configs, shortened for a first run."""
  classifier = RunSpec.from_config(common_flags.load_config('deepconvnet_ham10000'))
  segmenter = RunSpec.from_config(common_flags.load_config('unet_ph2'))
  return {
      'deepconvnet': classifier.replace(
          phases=(classifier.phases[0].replace(epochs=values.classifier_epochs),),
          batch_size=values.batch_size, eval_batch_size=values.batch_size),
      'unet': segmenter.replace(
          phases=(segmenter.phases[0].replace(epochs=values.segmenter_epochs),),
          model=values.segmenter, image_size=values.segmentation_size,
          batch_size=values.batch_size, eval_batch_size=values.batch_size),
  }


def main(values, rest):
  del rest
  common_flags.quiet_orbax()
  tfds.disable_progress_bar()
  workdir = values.workdir or 'runs/demo'
  try:  # both runs checked before either is built
    runs = specs(values)
    for spec in runs.values():
      check_layout(spec, num_devices=jax.device_count(), process_count=jax.process_count())
  except ConfigError as error:
    common_flags.fail(str(error))
  sources = manual_dirs(values.manual_dir, workdir)
  data_dir = values.data_dir or os.path.join(workdir, 'tfds')
  start = time.perf_counter()
  for name, spec in runs.items():
    run_dir = os.path.join(workdir, name)
    try:
      result = trainer.train(spec, run_dir, data_dir=data_dir,
                             manual_dir=sources[spec.dataset])
      evaluation = evaluate_workdir(run_dir, split='test', history=result.history)
    except (ConfigError, FileNotFoundError, DatasetFileError) as error:
      common_flags.fail(str(error))
    keys = ('accuracy', 'balanced_accuracy', 'f1_macro') if spec.task == 'classification' \
        else ('dice', 'iou', 'mean_iou')
    print(f'{name} on {spec.dataset}: test '
          + ', '.join(f'{k} {evaluation.metrics[k]:.3f}' for k in keys)
          + f'; report in {evaluation.report_dir}')
  print(f'demo done in {time.perf_counter() - start:.0f}s; reports under '
        f'{os.path.abspath(workdir)}/*/report/test/ (report.json and PNG figures)')


if __name__ == '__main__':
  common_flags.run(main, define)
