r"""Saves the backbone of a trained backbone-and-head classifier as weights that
`--config.init_from` reads, as launch/convert_weights.py saves Keras' ImageNet ones: for
in-domain transfer (paper 2's B3 pretrained on HAM10000, then trained on ISIC9).

  python launch/export_backbone.py --workdir=runs/b3_ham10000 --output=runs/b3_ham_backbone

Takes the run's best checkpoint (--step=latest or a step number for another). The output
is written whole or not at all, and never over an existing folder that has files.
"""

import os

from absl import flags

import common_flags
import jax_startup
from skinjax.convert.converted_weights import check_output_free, save_converted
from skinjax.evaluation.restore import restore_run
from skinjax.models import MODELS
from skinjax.train.spec import ConfigError

SKIN_SUFFIX = '_skin'  # the registry's classifiers: <backbone>_skin


def define(values, argv):
  del argv
  flags.DEFINE_string('workdir', None, 'The trained run.', flag_values=values)
  flags.DEFINE_string('output', None, 'Folder to create with the backbone weights.',
                      flag_values=values)
  flags.DEFINE_string('step', 'best', "Checkpoint: 'best', 'latest' or a step number.",
                      flag_values=values)


def backbone_name(model: str) -> str | None:
  """The registry name of a classifier's headless backbone ('efficientnetv2_b3_skin' ->
  'efficientnetv2_b3'), or None for a model that has no such backbone."""
  name = model[:-len(SKIN_SUFFIX)] if model.endswith(SKIN_SUFFIX) else None
  return name if name in MODELS else None


def main(values, rest):
  del rest
  try:
    step = common_flags.checkpoint_step(values.step)
  except common_flags.CommandLineError as error:
    common_flags.fail(str(error))
  output = values.output
  occupied = f'--output={output}: exists and is not an empty folder'
  try:
    check_output_free(output)
  except FileExistsError:
    common_flags.fail(occupied)
  if not os.path.isdir(values.workdir):
    common_flags.fail(f'--workdir={values.workdir}: no such folder')
  jax_startup.start()
  common_flags.quiet_orbax()
  try:
    run = restore_run(values.workdir, step=step)
  except (FileNotFoundError, ConfigError) as error:
    common_flags.fail(str(error))
  name = backbone_name(run.spec.model)
  if name is None or 'backbone' not in run.state.params:
    common_flags.fail(f'--workdir={values.workdir}: its model {run.spec.model} is not a '
                      'backbone-and-head classifier (<backbone>_skin)')
  variables = {'params': run.state.params['backbone'],
               'batch_stats': run.state.batch_stats.get('backbone', {})}
  config = {'model': name, 'num_classes': None, 'include_preprocessing': True,
            'source': f'skinjax run {os.path.abspath(values.workdir)}, step {run.step}',
            'trained_on': run.description.get('dataset_full_name'),
            'left_out': run.description.get('left_out')}
  try:
    save_converted(output, variables, config)
  except FileExistsError:  # filled by another process since the check above
    common_flags.fail(occupied)
  except OSError as error:
    common_flags.fail(f'--output={output}: cannot be written ({error})')
  print(f'{name} backbone of {values.workdir} (step {run.step}) -> {output}')


if __name__ == '__main__':
  common_flags.run(main, define, required=('workdir', 'output'))
