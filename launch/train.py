r"""Trains a paper's system from its config, then scores its best checkpoint on the test
split: one entry for DeepConvNet, U-Net and B3.

  python launch/train.py --config=launch/configs/deepconvnet_ham10000.py \
      --workdir=runs/dcn --manual_dir=/data/HAM10000 [--config.batch_size=128]

Every run choice is a config field, set as --config.<field> (skinjax/train/spec.py lists
them). Restarting with the same --workdir resumes from its latest checkpoint; a resume may
change only how the run runs (skinjax.train.spec.RESUMABLE), never what it computes. One
run at a time writes a workdir. Several processes (one per host): add --multihost
--config.parallel=jit, plus --coordinator_address, --num_processes and --process_id where
JAX cannot find them in the cluster's environment.
"""

import dataclasses
import os
import sys

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

import common_flags
import jax_startup
from skinjax.data.image_files import DatasetFileError
from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.train import trainer
from skinjax.train.checkpoint import CheckpointMismatchError, CheckpointWriteError
from skinjax.train.metric_writer import MetricWriteError
from skinjax.train.spec import ConfigError, RunSpec, check_layout


@dataclasses.dataclass(frozen=True)
class Invocation:
  """A checked command line: the run and where it goes."""

  spec: RunSpec
  workdir: str
  data_dir: str | None
  manual_dir: str | None
  overlap_manual_dir: str | None
  processes: common_flags.Processes


def define(values, argv):
  common_flags.define_common(values)
  flags.DEFINE_string('overlap_manual_dir', None, 'The download of the dataset that '
                      '--config.exclude_overlap_with names, when it is not built in '
                      '--data_dir.', flag_values=values)
  # New attributes are let through to the run spec, which names an unknown field and the
  # closest known one (and so also takes --config.model_kwargs.<keyword>).
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                  flag_values=values, sys_argv=argv, lock_config=False,
                                  accept_new_attributes=True)


def config_file(argv) -> str | None:
  """The --config file named on the command line (the last, as absl takes it)."""
  found = None
  for position, arg in enumerate(argv[1:], start=1):
    if arg.startswith('--config='):
      found = arg.split('=', 1)[1]
    elif arg == '--config' and position + 1 < len(argv):
      found = argv[position + 1]
  return found


def parse_and_check(argv, *, num_devices: int | None = None,
                    process_count: int | None = None) -> Invocation:
  """Everything a command line can get wrong, found without building or writing anything:
  CommandLineError or ConfigError, one line naming the flag or field.

  num_devices, process_count: where the run would run (the device and process rules are
  checked when given; the launcher checks them after joining the other processes).
  """
  path = config_file(argv)
  if path is None:
    raise common_flags.CommandLineError('--config: required (an experiment file such as '
                                        'launch/configs/deepconvnet_ham10000.py)')
  common_flags.load_config_file(path)
  values, _ = common_flags.parse(argv, define, required=('config', 'workdir'))
  processes = common_flags.processes(values)
  if os.path.exists(values.workdir) and not os.path.isdir(values.workdir):
    raise common_flags.CommandLineError(f'--workdir={values.workdir}: a file, not a folder')
  for name in ('manual_dir', 'overlap_manual_dir'):
    folder = getattr(values, name)
    if folder is not None and not os.path.isdir(folder):
      raise common_flags.CommandLineError(f'--{name}={folder}: no such folder')
  spec = RunSpec.from_config(values.config)
  if values.overlap_manual_dir is not None and not spec.exclude_overlap_with:
    raise common_flags.CommandLineError(
        '--overlap_manual_dir: only used with --config.exclude_overlap_with=<dataset>')
  if num_devices is not None:
    check_layout(spec, num_devices=num_devices, process_count=process_count or 1)
  return Invocation(spec, values.workdir, values.data_dir, values.manual_dir,
                    values.overlap_manual_dir, processes)


def run(invocation: Invocation):
  common_flags.initialize_processes(invocation.processes)  # before any JAX computation
  jax_startup.start()
  common_flags.quiet_orbax()
  spec, workdir = invocation.spec, invocation.workdir
  try:
    check_layout(spec, num_devices=jax.device_count(), process_count=jax.process_count())
    data_dir = common_flags.data_dir(invocation.data_dir)
    result = trainer.train(spec, workdir, data_dir=data_dir,
                           manual_dir=invocation.manual_dir,
                           overlap_manual_dir=invocation.overlap_manual_dir)
    evaluation = evaluate_workdir(workdir, split='test', history=result.history)
  except (ConfigError, CheckpointMismatchError, CheckpointWriteError, MetricWriteError,
          FileNotFoundError, trainer.NonFiniteError, DatasetFileError) as error:
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


def main():
  common_flags.exit_on_help(sys.argv, define)
  try:
    invocation = parse_and_check(sys.argv)
  except (common_flags.CommandLineError, ConfigError) as error:
    common_flags.fail(str(error))
  # absl's own flags (logging) at their defaults; absl sets up logging, then runs the run.
  app.run(lambda _: run(invocation), argv=sys.argv[:1])


if __name__ == '__main__':
  main()
