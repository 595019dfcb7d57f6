"""One process of a multi-process test run (see test_multiprocess.py).

  python tests/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUT DATA_DIR MANUAL_DIR

Runs trainer.train_and_evaluate on the synthetic HAM10000 into OUT/workdir, then writes
OUT/writes_<id>.json: the files this process opened for writing there, and its test
metrics. The parent sets XLA_FLAGS (the devices per process) before this starts.
"""

import json
import os
import sys


def run_config():
  """The classifier test config on jit, unbalanced: 3 steps an epoch, so that the
  comparison is not of 100 Adam steps' accumulated round-off."""
  from training_runs import classifier_config
  return classifier_config(parallel='jit', balance='none')


def _record_writes(workdir: str, into: list):
  """Audits this process's opens for writing under `workdir` (orbax's own files aside)."""
  root = os.path.realpath(workdir) + os.sep
  ignored = tuple(root + name + os.sep for name in ('checkpoints', 'phases'))

  def hook(event, args):
    if event != 'open' or not isinstance(args[0], (str, bytes, os.PathLike)):
      return
    mode, flags = args[1], args[2]
    writing = (isinstance(mode, str) and any(c in mode for c in 'wax+')) or (
        isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    path = os.path.realpath(os.fsdecode(args[0]))
    if writing and path.startswith(root) and not path.startswith(ignored):
      into.append(path[len(root):])

  sys.addaudithook(hook)


def main(process_id, num_processes, port, out, data_dir, manual_dir):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # training_runs
  from skinjax.train import multihost
  multihost.initialize(coordinator_address=f'localhost:{port}',
                       num_processes=int(num_processes), process_id=int(process_id))
  from training_runs import train
  workdir = os.path.join(out, 'workdir')
  writes = []
  _record_writes(workdir, writes)
  metrics = train(run_config(), workdir, {'data_dir': data_dir, 'ham10000': manual_dir})
  with open(os.path.join(out, f'writes_{process_id}.json'), 'w') as file:
    json.dump({'writes': sorted(set(writes)), 'test_metrics': metrics}, file, default=float)


if __name__ == '__main__':
  main(*sys.argv[1:])
