r"""Evaluates a run's best checkpoint from its workdir alone, on the devices at hand.

  python launch/evaluate.py --workdir=runs/dcn [--split=test] [--parallel=jit]

Writes <workdir>/report/<split>/: report.json, classification_report.txt, figures.
"""

from absl import app, flags, logging

import common_flags
from skinjax.train import experiment, trainer

SPLIT = flags.DEFINE_enum('split', 'test', ['train', 'validation', 'test'], 'Split to evaluate.')
STEP = flags.DEFINE_string('step', 'best', "Checkpoint: 'best', 'latest' or a step number.")
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    common_flags.fail(f'unexpected arguments {argv[1:]}')
  common_flags.initialize_processes()  # before any JAX computation
  logging.get_absl_handler().addFilter(lambda record: 'orbax' not in record.pathname)
  step = STEP.value if STEP.value in ('best', 'latest') else int(STEP.value)
  try:
    metrics = trainer.evaluate_workdir(common_flags.WORKDIR.value, split=SPLIT.value,
                                       data_dir=common_flags.DATA_DIR.value,
                                       manual_dir=common_flags.MANUAL_DIR.value, step=step,
                                       parallel=common_flags.PARALLEL.value)
  except (FileNotFoundError, experiment.ConfigError) as error:
    common_flags.fail(str(error))
  shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
  print(f'{SPLIT.value} metrics: {shown}')
  print(f'report: {common_flags.WORKDIR.value}/report/{SPLIT.value}/report.json')


if __name__ == '__main__':
  app.run(main)
