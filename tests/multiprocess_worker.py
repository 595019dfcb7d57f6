"""One process of a multi-process test run (see test_multiprocess.py).

  python tests/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUT DATA_DIR MANUAL_DIR \
      [DATA_SHARDS]

Trains and scores the test split (training_runs.train) on the synthetic HAM10000 into
OUT/workdir, then writes OUT/writes_<id>.json: the files this process opened for writing
there, its test metrics, and the rows of each split whose images it gathered. The parent
sets XLA_FLAGS (the devices per process) before this starts.
"""

import json
import os
import sys


def run_config(**changes):
  """The classifier test config on jit, unbalanced: 3 steps an epoch, so that the
  comparison is not of 100 Adam steps' accumulated round-off."""
  from training_runs import classifier_spec
  return classifier_spec(parallel='jit', balance='none', **changes)


def _record_reads(into: dict):
  """Records, per split (named by its first image id), the rows this process gathers."""
  import numpy as np
  from skinjax.data import pipeline
  gather = pipeline.InputPipeline._host_batch

  def recording(self, batch):
    index = batch['index'] if isinstance(batch, dict) else batch
    rows = np.asarray(index)[self.parallel.local_rows(len(index))]
    into.setdefault(str(self.arrays.image_ids[0]), set()).update(rows.tolist())
    return gather(self, batch)

  pipeline.InputPipeline._host_batch = recording


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


def main(process_id, num_processes, port, out, data_dir, manual_dir, data_shards='0'):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # training_runs
  from skinjax.train import multihost
  multihost.initialize(coordinator_address=f'localhost:{port}',
                       num_processes=int(num_processes), process_id=int(process_id))
  from training_runs import train
  workdir = os.path.join(out, 'workdir')
  writes, reads = [], {}
  _record_writes(workdir, writes)
  _record_reads(reads)
  layouts = {'data_dir': data_dir, 'ham10000': manual_dir}
  config = run_config(data_shards=int(data_shards))
  metrics = train(config, workdir, layouts)
  from skinjax.data import experiment_data
  data = experiment_data.prepare(config, data_dir=data_dir, manual_dir=manual_dir)
  splits = {'train': data.train, 'validation': data.validation, 'test': data.test}
  rows_read = {name: sorted(reads.get(str(arrays.image_ids[0]), ()))
               for name, arrays in splits.items()}
  with open(os.path.join(out, f'writes_{process_id}.json'), 'w') as file:
    json.dump({'writes': sorted(set(writes)), 'test_metrics': metrics, 'rows_read': rows_read,
               'split_sizes': {name: len(arrays) for name, arrays in splits.items()}},
              file, default=float)


if __name__ == '__main__':
  main(*sys.argv[1:])
