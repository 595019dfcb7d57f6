"""Passes over a split: a training epoch, and one inference pass that returns the metrics
and (when asked) every example's outputs together.

Both run a parallel wrapper's steps (skinjax.train.parallel) on batches from an input
pipeline (skinjax.data.pipeline.InputPipeline); metrics stay on the devices and the host
reads them once, at the end.
"""

import time
from typing import Callable

import jax
import numpy as np
import tqdm


def train_epoch(parallel, feed, state, order: np.ndarray, rng, *,
                after_step: Callable | None = None, description: str = '',
                show_progress: bool = False):
  """One train step per row of `order`. Returns (state, metrics dict, seconds).

  state: a TrainState placed with `parallel.replicate`.
  order: int32[steps, batch] indices into the feed's arrays (pipeline.train_order rows;
    a resumed epoch passes the rows it has left).
  after_step: called as after_step(state, steps_done) after each step (checkpoints and
    pre-emption; it may raise to stop the epoch).
  """
  metrics = parallel.replicate(parallel.task.empty_metrics())
  start = time.perf_counter()
  bar = tqdm.tqdm(total=len(order), unit='step', leave=False, desc=description,
                  disable=not show_progress or jax.process_index() != 0)
  meter = _CompletedRate(order.shape[1] if len(order) else 0)
  try:
    for done, batch in enumerate(feed.batches(order), start=1):
      state, metrics = parallel.train_step(state, metrics, batch, rng, feed.data)
      if not bar.disable and meter.due():
        jax.block_until_ready(metrics)
        bar.update(done - bar.n)
        bar.set_postfix_str(meter.completed(done), refresh=False)
      if after_step is not None:
        after_step(state, done)
    metrics = parallel.fetch(metrics).compute()  # the epoch's one host read
  finally:
    bar.close()
  return state, metrics, time.perf_counter() - start


class _CompletedRate:
  """Images/s of completed steps, for the progress bar.

  Steps are dispatched asynchronously, so a count of dispatched steps runs ahead of the
  device (it showed 20,000+ images/s at the start of each epoch). Twice a second the bar
  waits for the latest step, so it counts steps done; the wait is one dispatch's bubble.
  The rate is measured from the first completed step, so compilation is not in it.
  """

  def __init__(self, batch_size: int, every_s: float = 0.5):
    self.batch_size, self.every_s = batch_size, every_s
    self.last = -float('inf')
    self.first = None  # (time, steps) at the first completed step

  def due(self) -> bool:
    return time.perf_counter() - self.last >= self.every_s

  def completed(self, steps: int) -> str:
    """Call once `steps` steps are known done."""
    self.last = now = time.perf_counter()
    if self.first is None or steps <= self.first[1]:
      self.first = (now, steps)
      return 'compiled'
    rate = (steps - self.first[1]) * self.batch_size / (now - self.first[0])
    return f'{rate:.0f} images/s'


def eval_pass(parallel, state, feed, order: list[dict], *, keep_outputs: bool = False):
  """Inference over every batch of `order` (pipeline.eval_order): (metrics, outputs).

  One application of the model per batch gives both. outputs: with keep_outputs, the
  task's per-example outputs (skinjax.train.tasks) as host arrays with one row per
  example of the feed's arrays, in order (padding dropped; every process gets them all);
  else None.
  """
  metrics = parallel.replicate(parallel.task.empty_metrics())
  outputs, pending = None, None

  def keep(batch, device_outputs):
    nonlocal outputs
    host = parallel.outputs_to_host(device_outputs)
    if outputs is None:
      outputs = {key: np.zeros((len(feed.arrays),) + value.shape[1:], value.dtype)
                 for key, value in host.items()}
    rows = batch['index'][batch['valid']]
    for key, value in host.items():
      outputs[key][rows] = value[batch['valid']]

  for batch, placed in zip(order, feed.batches(order)):
    metrics, batch_outputs = parallel.eval_step(state, metrics, placed, feed.data)
    if keep_outputs:
      if pending is not None:  # one batch behind: the device runs ahead of the copy
        keep(*pending)
      pending = (batch, batch_outputs)
  if pending is not None:
    keep(*pending)
  if keep_outputs and outputs is None:  # an empty split
    outputs = {}
  return parallel.fetch(metrics).compute(), outputs
