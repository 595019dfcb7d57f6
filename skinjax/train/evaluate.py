"""Evaluation over a finite stream of batches, with the final partial batch padded.

Every batch reaches the device at the same shape, so the last, smaller one costs no new
compilation; its padding is marked invalid and counts in no metric.
"""

from typing import Iterable

import numpy as np


def pad_batch(batch: dict, batch_size: int) -> dict:
  """Pads every array of `batch` along axis 0 to `batch_size` and adds bool `valid`.

  Padding repeats the first example (any real values keep the model's arithmetic finite).
  """
  sizes = {key: np.shape(value)[0] for key, value in batch.items()}
  size = next(iter(sizes.values()))
  if len(set(sizes.values())) != 1:
    raise ValueError(f'batch arrays disagree on their first dimension: {sizes}')
  if size > batch_size:
    raise ValueError(f'batch of {size} examples is larger than batch_size {batch_size}')
  padding = batch_size - size
  padded = {key: np.concatenate([value, np.repeat(value[:1], padding, axis=0)])
            if padding else np.asarray(value) for key, value in batch.items()}
  padded['valid'] = np.arange(batch_size) < size
  return padded


def evaluate(parallel, state, task, batches: Iterable[dict], batch_size: int | None = None,
             data=None) -> dict:
  """Metrics of `state` (already placed by `parallel.replicate`) over `batches`.

  batches: host dicts of numpy arrays, each with at most `batch_size` examples, padded
    here; or, with batch_size None, batches already padded and on the devices.
  data: device-resident arrays the steps gather from (see skinjax.data.pipeline).
  """
  metrics = parallel.replicate(task.empty_metrics())
  for batch in batches:
    if batch_size is not None:
      batch = parallel.shard_batch(pad_batch(batch, batch_size))
    metrics = parallel.eval_step(state, metrics, batch, data)
  return parallel.fetch(metrics).compute()
