r"""The README's main job: build the datasets, train DeepConvNet and a U-Net briefly with
paper 1's configs, score them on the test splits and write their reports.

Without --manual_dir it writes synthetic HAM10000 and PH2 layouts (procedurally drawn
lesions with exact masks) and builds them with the real TFDS builders; with --manual_dir
it builds the folders found there (HAM10000/, PH2/ or PH2-sample/).

  python launch/demo.py --workdir=runs/demo
  python launch/demo.py --workdir=runs/real --manual_dir=../shared/data
"""

import dataclasses
import json
import os
import time

from absl import flags, logging
import jax
import tensorflow_datasets as tfds

import common_flags
import jax_startup
from skinjax.data import synthetic
from skinjax.data.image_files import DatasetFileError
from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.train import trainer
from skinjax.train.spec import ConfigError, RunSpec, check_layout


def define(values, argv):
  del argv
  common_flags.define_common(values)
  # Each flag that departs from paper 1 says why in its help: the summary points here.
  flags.DEFINE_integer('classifier_epochs', 20, 'DeepConvNet epochs (paper 1: 20).',
                       lower_bound=1, flag_values=values)
  flags.DEFINE_integer('classifier_batch_size', 16, 'DeepConvNet global batch size (paper '
                       '1: 64; the synthetic HAM10000 is ~50x smaller than the real one, and '
                       'batch 16 gives it 183 steps an epoch, enough for 0.9 test accuracy '
                       'in 20 epochs, where 64 gives 46 and stays below).', lower_bound=1,
                       flag_values=values)
  flags.DEFINE_integer('segmenter_epochs', 15, 'U-Net epochs (paper 1: 100; a first run '
                       'on a CPU).', lower_bound=1, flag_values=values)
  flags.DEFINE_integer('segmenter_batch_size', 4, 'U-Net global batch size (paper 1: 16; '
                       'the synthetic PH2 has 28 training images: 7 steps an epoch at 4, '
                       'one at 16).', lower_bound=1, flag_values=values)
  flags.DEFINE_string('segmenter', 'unet_small', 'Registry name of the U-Net variant '
                      '(paper 1: unet; unet_small trains in seconds on a CPU).',
                      flag_values=values)
  flags.DEFINE_integer('segmentation_size', 64, 'U-Net image side (paper 1: 224; a first '
                       'run on a CPU).', lower_bound=16, flag_values=values)
  flags.DEFINE_float('segmenter_bn_momentum', 0.9, "U-Net BatchNorm momentum (paper 1: "
                     "Keras' 0.99, whose running statistics lag behind a run of ~100 steps: "
                     'the eval-mode U-Net then marks nothing, validation Dice 0.0 while '
                     'training Dice is 0.97).', lower_bound=0.0, upper_bound=1.0,
                     flag_values=values)

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


# Model keywords paper 1 leaves at their Keras defaults (the spec holds none of them).
PAPER_MODEL_KWARGS = {'bn_momentum': 0.99}
CONFIGS = {'deepconvnet': 'deepconvnet_ham10000', 'unet': 'unet_ph2'}
SHOWN_METRICS = {'classification': ('accuracy', 'balanced_accuracy', 'f1_macro'),
                 'segmentation': ('dice', 'iou', 'mean_iou')}


def paper_specs() -> dict[str, RunSpec]:
  return {name: RunSpec.from_config(common_flags.load_config(config))
          for name, config in CONFIGS.items()}


def specs(values, papers: dict[str, RunSpec]) -> dict[str, RunSpec]:
  """Paper 1's two configs, shortened for a first run on a CPU."""
  classifier, segmenter = papers['deepconvnet'], papers['unet']
  return {
      'deepconvnet': classifier.replace(
          phases=(classifier.phases[0].replace(epochs=values.classifier_epochs),),
          batch_size=values.classifier_batch_size),
      'unet': segmenter.replace(
          phases=(segmenter.phases[0].replace(epochs=values.segmenter_epochs),),
          model=values.segmenter, image_size=values.segmentation_size,
          model_kwargs=dict(segmenter.model_kwargs,
                            bn_momentum=values.segmenter_bn_momentum),
          batch_size=values.segmenter_batch_size,
          # Padding 4 validation images to 16 would quadruple each validation pass.
          eval_batch_size=min(segmenter.eval_batch_size, values.segmenter_batch_size)),
  }


def changes_from_paper(paper: RunSpec, demo: RunSpec) -> list[str]:
  """'field demo (paper value)' for each choice of `demo` that paper 1's config does not
  make; eval_batch_size is left out (it changes no figure)."""
  changes = []
  for field in dataclasses.fields(RunSpec):
    old, new = getattr(paper, field.name), getattr(demo, field.name)
    if field.name == 'eval_batch_size' or old == new:
      continue
    if field.name == 'phases':
      pairs = [(key, getattr(new_phase, key), getattr(old_phase, key))
               for old_phase, new_phase in zip(old, new) for key in ('epochs', 'learning_rate')]
    elif field.name == 'model_kwargs':
      pairs = [(key, value, old.get(key, PAPER_MODEL_KWARGS.get(key)))
               for key, value in new.items()]
    else:
      pairs = [(field.name, new, old)]
    changes += [f'{key} {value} (paper {was})' for key, value, was in pairs if value != was]
  return changes


def summary(name: str, paper: RunSpec, spec: RunSpec, evaluation) -> list[str]:
  """What one run trained, what it scored on the test split and where its report is."""
  recipe = [f'{key} {getattr(spec, key)}' for key in ('balance', 'augment')
            if getattr(spec, key) != 'none']
  changes = changes_from_paper(paper, spec)
  lines = [f'{name}: {spec.model} on {spec.dataset} at {spec.image_size}x{spec.image_size}, '
           f"paper 1's {CONFIGS[name]} ({', '.join(recipe) or 'no balancing or augmentation'}); "
           f'changed: {", ".join(changes) or "nothing"}']
  scores = ', '.join(f'{key} {evaluation.metrics[key]:.3f}' for key in SHOWN_METRICS[spec.task])
  if evaluation.report_dir is None:  # another process writes the reports
    return lines + [f'  test {scores}']
  if evaluation.report_error:
    return lines + [f'  test {scores}', f'  no report: {evaluation.report_error}']
  with open(os.path.join(evaluation.report_dir, 'report.json')) as file:
    report = json.load(file)
  figures = ', '.join(os.path.basename(path) for path in report['figures'].values())
  return lines + [f'  test {scores} ({report["examples"]} images)',
                  f'  report: {os.path.abspath(evaluation.report_dir)}/ (report.json, '
                  f'{figures})']


def main(values, rest):
  del rest
  jax_startup.start()
  common_flags.quiet_orbax()
  tfds.disable_progress_bar()
  workdir = values.workdir or 'runs/demo'
  try:  # both runs checked before either is built
    papers = paper_specs()
    runs = specs(values, papers)
    for spec in runs.values():
      check_layout(spec, num_devices=jax.device_count(), process_count=jax.process_count())
  except ConfigError as error:
    common_flags.fail(str(error))
  start = time.perf_counter()
  sources = manual_dirs(values.manual_dir, workdir)
  data_dir = values.data_dir or os.path.join(workdir, 'tfds')
  lines = []
  for name, spec in runs.items():
    run_dir = os.path.join(workdir, name)
    try:
      result = trainer.train(spec, run_dir, data_dir=data_dir,
                             manual_dir=sources[spec.dataset])
      evaluation = evaluate_workdir(run_dir, split='test', history=result.history)
    except (ConfigError, FileNotFoundError, DatasetFileError) as error:
      common_flags.fail(str(error))
    lines += summary(name, papers[name], spec, evaluation)
  # Last, so that the logs above do not bury what a newcomer looks for.
  source = 'synthetic layouts' if values.manual_dir is None else 'downloads'
  print(f'demo done in {time.perf_counter() - start:.0f}s: trained {len(runs)} models on '
        f'the {source} in {os.path.abspath(os.path.dirname(sources["ham10000"]))}/',
        *lines, sep='\n')
  print(f'reports under {os.path.abspath(workdir)}/*/report/test/ (report.json and PNG '
        'figures); each change from paper 1 is a flag, and launch/demo.py says why there')


if __name__ == '__main__':
  common_flags.run(main, define)
