"""One process of a multi-process test run (see test_multiprocess.py).

  python tests/multiprocess_worker.py KIND PROCESS_ID NUM_PROCESSES PORT OUT [DATA_DIR MANUAL_DIR]

KIND 'steps': a few real train steps, an evaluation and predictions through JitParallel
  (`steps_run`, which the test also runs in one process); process 0 saves the results
  to OUT/steps.npz.
KIND 'train': trainer.train_and_evaluate on the synthetic HAM10000 into OUT/workdir; each
  process lists in OUT/writes_<id>.json the files it opened for writing there.
The parent sets XLA_FLAGS (the devices per process) before this starts.
"""

import json
import os
import sys

import numpy as np

GLOBAL_BATCH = 8
STEPS = 3
EVAL_EXAMPLES = 13  # not a multiple of the batch: the last batch is padded


def steps_run(parallel_devices=None):
  """(initial params, params, train metrics, eval metrics, logits) after STEPS updates on
  fixed batches.

  Every process builds the same global batches and passes its `local_rows` of them.
  """
  import jax

  from skinjax.data import pipeline
  from skinjax.data.arrays import SplitArrays
  from skinjax.models import create_model
  from skinjax.train.evaluate import evaluate
  from skinjax.train.parallel import make_parallel
  from skinjax.train.state import create_train_state, keras_adam
  from skinjax.train.tasks import ClassificationTask

  rng = np.random.default_rng(0)
  arrays = SplitArrays(rng.integers(0, 256, (32, 28, 28, 3)).astype(np.uint8),
                       rng.integers(0, 7, 32).astype(np.int32),
                       np.array([str(i) for i in range(32)]))
  model, task = create_model('deepconvnet'), ClassificationTask(7)
  parallel = make_parallel('jit', model, task, parallel_devices,
                           preprocess=pipeline.Preprocess())
  feed = pipeline.InputPipeline(arrays, parallel, placement='stream')
  initial = create_train_state(jax.random.key(0), model, (1, 28, 28, 3), keras_adam(1e-3))
  state = parallel.replicate(initial)
  metrics = parallel.replicate(task.empty_metrics())
  order = pipeline.train_order(np.arange(32), GLOBAL_BATCH, epoch=0, seed=0)[:STEPS]
  for batch in feed.batches(order):
    state, metrics = parallel.train_step(state, metrics, batch, jax.random.key(1))
  eval_order = pipeline.eval_order(EVAL_EXAMPLES, GLOBAL_BATCH)
  eval_metrics = evaluate(parallel, state, task,
                          feed.batches(eval_order, pad_to=GLOBAL_BATCH))
  logits = np.concatenate([parallel.predict(state, batch)[:len(index)] for index, batch
                           in zip(eval_order, feed.batches(eval_order, pad_to=GLOBAL_BATCH))])
  return (jax.device_get(initial.params), parallel.fetch(state).params, parallel.fetch(metrics).compute(), eval_metrics,
          logits)


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


def main(kind, process_id, num_processes, port, out, data_dir=None, manual_dir=None):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # training_runs
  from skinjax.train import multihost
  multihost.initialize(coordinator_address=f'localhost:{port}',
                       num_processes=int(num_processes), process_id=int(process_id))
  import jax
  if kind == 'steps':
    _, params, train_metrics, eval_metrics, logits = steps_run()
    if multihost.is_primary():
      np.savez(os.path.join(out, 'steps.npz'), logits=logits,
               metrics=json.dumps([train_metrics, eval_metrics], default=float),
               **{jax.tree_util.keystr(path): leaf for path, leaf
                  in jax.tree_util.tree_leaves_with_path(params)})
  elif kind == 'train':
    from training_runs import train
    workdir = os.path.join(out, 'workdir')
    writes = []
    _record_writes(workdir, writes)
    metrics = train(run_config(), workdir,
                    {'data_dir': data_dir, 'ham10000': manual_dir})
    with open(os.path.join(out, f'writes_{process_id}.json'), 'w') as file:
      json.dump({'writes': sorted(set(writes)), 'test_metrics': metrics}, file, default=float)
  else:
    raise ValueError(f'KIND: expected steps or train, got {kind!r}')


if __name__ == '__main__':
  main(*sys.argv[1:])
