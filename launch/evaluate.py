r"""Scores a run's checkpoint from its workdir alone, on the devices at hand: on a split of
its own data, or on another dataset of the same task.

  python launch/evaluate.py --workdir=runs/dcn [--split=test] [--step=best|latest|N]
  python launch/evaluate.py --workdir=runs/unet_ham --dataset=ph2 --manual_dir=/data/PH2 \
      --split=all
  python launch/evaluate.py --workdir=runs/dcn --crop_with=runs/unet_ham  # lesion crops

Writes <workdir>/report/<split>/ (another dataset: report/<dataset>-<split>/):
report.json, classification_report.txt, figures. A classifier is scored on another
dataset through a declared class map (skinjax/data/class_maps.py), leaving out the images
it saw in training; the report says which map and how many were left out. It reads the
workdir without its lock and never writes into checkpoints/, so a run can be scored
while it trains; a workdir it cannot write into gets its metrics printed all the same.
"""

from absl import flags

import common_flags
import jax_startup
from skinjax.data.image_files import DatasetFileError
from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.evaluation.targets import SPLITS
from skinjax.train.spec import ConfigError


def define(values, argv):
  del argv
  common_flags.define_common(values)
  flags.DEFINE_enum('split', 'test', list(SPLITS),
                    "Split to score; 'all': every split of another --dataset.",
                    flag_values=values)
  flags.DEFINE_string('step', 'best', "Checkpoint: 'best', 'latest' or a step number.",
                      flag_values=values)
  flags.DEFINE_string('dataset', None, 'Score on another dataset of the same task '
                      "(default: the run's own).", flag_values=values)
  flags.DEFINE_string('dataset_config', '', "That dataset's builder config (default: one "
                      'that fits).', flag_values=values)
  flags.DEFINE_enum('parallel', None, ['pmap', 'jit'], 'Data-parallel wrapper here '
                    '(default: the mode the run trained with).', flag_values=values)
  flags.DEFINE_integer('batch_size', None, "Evaluation batch (default: the run's "
                       'eval_batch_size).', lower_bound=1, flag_values=values)
  flags.DEFINE_string('crop_with', None, "A segmenter run's workdir: score the lesion crops "
                      'it finds (paper 1, Fig. 17) instead of the whole images, into '
                      'report/<split>-lesion_crops/.', flag_values=values)
  flags.DEFINE_bool('kmeans', False, "A segmenter's evaluation: also score paper 2's k-means "
                    'colour segmentation (k=3) on the same images (report.json, "kmeans").',
                    flag_values=values)
  flags.DEFINE_float('crop_margin', 0.1, "With --crop_with: the margin added to each side "
                     "of the lesion's box, as a fraction of its size.", flag_values=values)


def main(values, rest):
  del rest
  common_flags.initialize_processes(common_flags.processes(values))  # before any JAX work
  jax_startup.start()
  common_flags.quiet_orbax()
  try:
    step = common_flags.checkpoint_step(values.step)
  except common_flags.CommandLineError as error:
    common_flags.fail(str(error))
  try:
    evaluation = evaluate_workdir(
        values.workdir, split=values.split, dataset=values.dataset,
        dataset_config=values.dataset_config, data_dir=values.data_dir,
        manual_dir=values.manual_dir, step=step, parallel=values.parallel,
        batch_size=values.batch_size, crop_with=values.crop_with,
        crop_margin=values.crop_margin, kmeans=values.kmeans)
  except (FileNotFoundError, ConfigError, DatasetFileError) as error:
    common_flags.fail(str(error))
  if evaluation.report_dir is None and evaluation.report_error is None:  # not process 0
    return
  target = evaluation.target
  shown = {k: round(v, 4) for k, v in evaluation.metrics.items() if isinstance(v, float)}
  print(f'{target.name} metrics ({len(target.arrays)} examples): {shown}')
  if target.excluded:
    print(f"left out {target.excluded['count']} images the run saw in training")
  if target.kmeans:
    shown_kmeans = {k: round(v, 4) for k, v in target.kmeans['metrics'].items()
                    if isinstance(v, float)}
    print(f'k-means (k={target.kmeans["k"]}) on the same images: {shown_kmeans}')
  if evaluation.report_error:
    common_flags.fail(evaluation.report_error)
  print(f'report: {evaluation.report_dir}/report.json')


if __name__ == '__main__':
  common_flags.run(main, define, required=('workdir',))
