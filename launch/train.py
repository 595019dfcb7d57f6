r"""Trains a paper's system from its config, then scores its best checkpoint on the test
split: one entry for DeepConvNet, U-Net and B3.

  python launch/train.py --config=launch/configs/deepconvnet_ham10000.py \
      --workdir=runs/dcn --manual_dir=/data/HAM10000 [--config.batch_size=128]

Every run choice is a config field, set as --config.<field> (skinjax/train/spec.py lists
them). Restarting with the same --workdir resumes from its latest checkpoint. Several
processes (one per host): add --multihost --config.parallel=jit, plus
--coordinator_address, --num_processes and --process_id where JAX cannot find them in the
cluster's environment.
"""

import sys

from absl import app, flags
import jax
from ml_collections import config_flags

import common_flags
from skinjax.data.image_files import DatasetFileError
from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.train import trainer
from skinjax.train.checkpoint import CheckpointMismatchError, CheckpointWriteError
from skinjax.train.spec import ConfigError, RunSpec

CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                         lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    common_flags.fail(f'unexpected arguments {argv[1:]}')
  common_flags.initialize_processes()  # before any JAX computation
  common_flags.quiet_orbax()
  workdir = common_flags.WORKDIR.value
  try:
    spec = RunSpec.from_config(CONFIG.value)  # every field checked, before anything is built
    result = trainer.train(spec, workdir, data_dir=common_flags.data_dir(),
                           manual_dir=common_flags.MANUAL_DIR.value)
    evaluation = evaluate_workdir(workdir, split='test', history=result.history)
  except (ConfigError, CheckpointMismatchError, CheckpointWriteError, FileNotFoundError,
          trainer.NonFiniteError, DatasetFileError) as error:
    common_flags.fail(str(error))
  except trainer.Preempted as stopped:
    # As a process ended by the signal reports itself (128 + 15 for SIGTERM, 130 for
    # SIGINT), so that a scheduler or a `train && evaluate` chain sees the run is not
    # finished; the checkpoint is complete.
    print(str(stopped), file=sys.stderr)
    sys.exit(stopped.exit_status)
  except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without a checkpoint
    print('error: stopped by a second SIGINT; the run resumes from its last complete '
          'checkpoint', file=sys.stderr)
    sys.exit(130)
  if jax.process_index() != 0:  # process 0 reports for the run
    return
  shown = {k: round(v, 4) for k, v in evaluation.metrics.items() if isinstance(v, float)}
  print(f'test metrics of the best checkpoint: {shown}')
  print(f'report: {evaluation.report_dir}/report.json')


if __name__ == '__main__':
  app.run(main)
