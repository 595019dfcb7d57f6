"""Flags every launcher shares, and how they reach a run config.

A mistake in them ends the launcher with one line on stderr, before anything compiles.
"""

import sys

from absl import flags

from skinjax.train import experiment

WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, report.')
DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: TFDS\'s).')
MANUAL_DIR = flags.DEFINE_string('manual_dir', None,
                                 'The dataset download, in its public layout.')
PARALLEL = flags.DEFINE_enum('parallel', None, ['pmap', 'jit'],
                             'Data-parallel wrapper (default: the config\'s).')
DTYPE = flags.DEFINE_enum('dtype', None, list(experiment.DTYPES),
                          'Compute dtype (default: the config\'s).')
SEED = flags.DEFINE_integer('seed', None, 'Seed (default: the config\'s).')
SKIP_NONFINITE = flags.DEFINE_bool(
    'skip_nonfinite', None, 'Skip (and count) updates whose loss or gradient is not finite '
    'instead of stopping the run (default: the config\'s, which stops).')
SPLIT_PROTOCOL = flags.DEFINE_enum('split_protocol', None, list(experiment.SPLIT_PROTOCOLS),
                                   'HAM10000: lesion-grouped split (default) or paper 1\'s.')
SKIP_CORRUPT = flags.DEFINE_bool(
    'skip_corrupt', None, 'When building the dataset, leave out damaged files (logged, and '
    'counted in the dataset info\'s metadata) instead of stopping at the first; the run\'s '
    'config keeps it, so evaluation accepts the same dataset.')

# Several processes (skinjax.train.multihost). --multihost alone lets JAX find the rest
# (SLURM, Open MPI, Kubernetes, Cloud TPU, JAX_COORDINATOR_ADDRESS and friends).
MULTIHOST = flags.DEFINE_bool('multihost', False,
                              'Join a multi-process run via jax.distributed.initialize.')
COORDINATOR_ADDRESS = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0\'s coordinator (multi-process).')
NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run.')
PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process\'s index, 0-based.')


def initialize_processes():
  """jax.distributed.initialize when the multi-process flags ask for it; call first."""
  from skinjax.train import multihost
  if PROCESS_ID.value is not None and NUM_PROCESSES.value is not None and not (
      0 <= PROCESS_ID.value < NUM_PROCESSES.value):
    fail(f'--process_id={PROCESS_ID.value}: expected 0..{NUM_PROCESSES.value - 1} '
         f'(--num_processes={NUM_PROCESSES.value})')
  multihost.initialize(multihost=MULTIHOST.value,
                       coordinator_address=COORDINATOR_ADDRESS.value,
                       num_processes=NUM_PROCESSES.value, process_id=PROCESS_ID.value)


def apply_to(config):
  """Writes the flags that were given into `config`."""
  with config.unlocked():
    for flag, key in ((PARALLEL, 'parallel'), (DTYPE, 'dtype'), (SEED, 'seed'),
                      (SPLIT_PROTOCOL, 'split_protocol'), (SKIP_NONFINITE, 'skip_nonfinite'),
                      (SKIP_CORRUPT, 'skip_corrupt')):
      if flag.value is not None:
        config[key] = flag.value
  return config


def data_dir() -> str:
  if DATA_DIR.value:
    return DATA_DIR.value
  import tensorflow_datasets as tfds
  return tfds.core.constants.DATA_DIR


def fail(message: str):
  """Ends the launcher with one line on stderr and exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def load_config(name: str):
  """The get_config() of launch/configs/<name>.py."""
  import importlib.util
  import os
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'skinjax_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
