r"""Trains a paper's system from its config: one entry for DeepConvNet, U-Net and B3.

  python launch/train.py --config=launch/configs/deepconvnet_ham10000.py \
      --workdir=runs/dcn --manual_dir=/data/HAM10000 [--config.batch_size=128]

Restarting with the same --workdir resumes from its latest checkpoint. Several processes
(one per host): add --multihost --parallel=jit, plus --coordinator_address, --num_processes
and --process_id where JAX cannot find them in the cluster's environment.
"""

import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

import common_flags
from skinjax.data.image_files import DatasetFileError
from skinjax.train import experiment, trainer
from skinjax.train.checkpoint import CheckpointMismatchError, CheckpointWriteError

CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                         lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    common_flags.fail(f'unexpected arguments {argv[1:]}')
  common_flags.initialize_processes()  # before any JAX computation
  # Orbax logs every step of every save at INFO.
  logging.get_absl_handler().addFilter(lambda record: 'orbax' not in record.pathname)
  config = common_flags.apply_to(CONFIG.value)
  try:
    # The trainer checks the config (and the workdir) before it builds anything.
    metrics = trainer.train_and_evaluate(config, common_flags.WORKDIR.value,
                                         data_dir=common_flags.data_dir(),
                                         manual_dir=common_flags.MANUAL_DIR.value)
  except (experiment.ConfigError, CheckpointMismatchError, CheckpointWriteError,
          FileNotFoundError, trainer.NonFiniteError, DatasetFileError) as error:
    common_flags.fail(str(error))
  except trainer.Preempted as stopped:
    # As a process ended by SIGTERM reports itself (128 + 15), so that a scheduler or a
    # `train && evaluate` chain sees the run is not finished; the checkpoint is complete.
    print(str(stopped), file=sys.stderr)
    sys.exit(143)
  if jax.process_index() != 0:  # process 0 reports for the run
    return
  shown = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
  print(f'test metrics of the best checkpoint: {shown}')
  print(f'report: {common_flags.WORKDIR.value}/report/test/report.json')


if __name__ == '__main__':
  app.run(main)
