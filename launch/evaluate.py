r"""Scores a run's checkpoint from its workdir alone, on the devices at hand: on a split of
its own data, or on another dataset of the same task.

  python launch/evaluate.py --workdir=runs/dcn [--split=test] [--step=best|latest|N]
  python launch/evaluate.py --workdir=runs/unet_ham --dataset=ph2 --manual_dir=/data/PH2 \
      --split=all

Writes <workdir>/report/<split>/ (another dataset: report/<dataset>-<split>/):
report.json, classification_report.txt, figures. A classifier is scored on another
dataset through a declared class map (skinjax/data/class_maps.py), leaving out the images
it saw in training; the report says which map and how many were left out.
"""

from absl import app, flags

import common_flags
from skinjax.data.image_files import DatasetFileError
from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.evaluation.targets import SPLITS
from skinjax.train.spec import ConfigError

SPLIT = flags.DEFINE_enum('split', 'test', list(SPLITS),
                          "Split to score; 'all': every split of another --dataset.")
STEP = flags.DEFINE_string('step', 'best', "Checkpoint: 'best', 'latest' or a step number.")
DATASET = flags.DEFINE_string('dataset', None,
                              'Score on another dataset of the same task (default: the '
                              "run's own).")
DATASET_CONFIG = flags.DEFINE_string('dataset_config', '',
                                     "That dataset's builder config (default: one that fits).")
PARALLEL = flags.DEFINE_enum('parallel', None, ['pmap', 'jit'],
                             'Data-parallel wrapper here (default: the mode the run trained '
                             'with).')
BATCH_SIZE = flags.DEFINE_integer('batch_size', None,
                                  "Evaluation batch (default: the run's eval_batch_size).")
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    common_flags.fail(f'unexpected arguments {argv[1:]}')
  common_flags.initialize_processes()  # before any JAX computation
  common_flags.quiet_orbax()
  step = STEP.value
  if step not in ('best', 'latest'):
    if not step.isdigit():
      common_flags.fail(f"--step={step}: expected 'best', 'latest' or a step number")
    step = int(step)
  try:
    evaluation = evaluate_workdir(
        common_flags.WORKDIR.value, split=SPLIT.value, dataset=DATASET.value,
        dataset_config=DATASET_CONFIG.value, data_dir=common_flags.DATA_DIR.value,
        manual_dir=common_flags.MANUAL_DIR.value, step=step, parallel=PARALLEL.value,
        batch_size=BATCH_SIZE.value)
  except (FileNotFoundError, ConfigError, DatasetFileError) as error:
    common_flags.fail(str(error))
  if evaluation.report_dir is None:  # not process 0
    return
  target = evaluation.target
  shown = {k: round(v, 4) for k, v in evaluation.metrics.items() if isinstance(v, float)}
  print(f'{target.name} metrics ({len(target.arrays)} examples): {shown}')
  if target.excluded:
    print(f"left out {target.excluded['count']} images the run saw in training")
  print(f'report: {evaluation.report_dir}/report.json')


if __name__ == '__main__':
  app.run(main)
