"""A minimal training loop over host batches: place, step, read metrics at the end.

Metrics stay on the devices for the whole loop; the host reads them once.
"""

from typing import Iterable

import jax


def fit(parallel, state, task, batches: Iterable[dict], rng, data=None, *, placed=False):
  """Runs one train step per batch. Returns (placed state, metrics dict).

  state: a TrainState already placed with `parallel.replicate`.
  batches: host dicts of numpy arrays, each a full global batch; or, with `placed`,
    batches already on the devices (from skinjax.data.pipeline.InputPipeline).
  data: device-resident arrays the steps gather from, or None.
  """
  metrics = parallel.replicate(task.empty_metrics())
  for batch in batches:
    batch = batch if placed else parallel.shard_batch(batch)
    state, metrics = parallel.train_step(state, metrics, batch, rng, data)
  return state, parallel.fetch(jax.block_until_ready(metrics)).compute()
