"""Flags every launcher shares: where the run and the data are, and several processes.

A run's own choices are config fields, set only as `--config.<field>` (launch/train.py);
no flag here shadows one. A mistake ends the launcher with one line on stderr (`fail`).
"""

import importlib.util
import os
import sys

from absl import flags

WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, report.')
DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: TFDS\'s).')
MANUAL_DIR = flags.DEFINE_string('manual_dir', None,
                                 'The dataset download, in its public layout.')

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


def data_dir() -> str:
  if DATA_DIR.value:
    return DATA_DIR.value
  import tensorflow_datasets as tfds
  return tfds.core.constants.DATA_DIR


def fail(message: str):
  """Ends the launcher with one line on stderr and exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def quiet_orbax():
  """Orbax logs every step of every save at INFO."""
  from absl import logging
  logging.get_absl_handler().addFilter(lambda record: 'orbax' not in record.pathname)


def load_config(name: str):
  """The get_config() ConfigDict of launch/configs/<name>.py."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'skinjax_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
