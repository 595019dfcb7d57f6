"""The training progress bar reports images/s of steps the device has finished, not of
steps dispatched ahead of it."""

import time

import jax
import jax.numpy as jnp
import numpy as np

from skinjax.train import passes

_STEP_S = 0.05  # the device's time per step, forced by a host callback inside the step


class _Metrics(dict):
  def compute(self):
    return {'count': float(self['count'])}


class _SlowParallel:
  """A parallel wrapper whose step takes _STEP_S on the device and returns at once."""

  class task:
    @staticmethod
    def empty_metrics():
      return {'count': jnp.zeros(())}

  def __init__(self):
    def sleep(x):
      time.sleep(_STEP_S)
      return x

    @jax.jit
    def step(state, metrics):
      slept = jax.pure_callback(sleep, jax.ShapeDtypeStruct((), jnp.float32),
                                metrics['count'])
      return state, {'count': slept + 1}

    self._step = step

  def replicate(self, tree):
    return tree

  def fetch(self, tree):
    return _Metrics(jax.device_get(tree))

  def train_step(self, state, metrics, batch, rng, data):
    return self._step(state, metrics)


class _Feed:
  data = None

  def batches(self, order):
    yield from order


def test_the_bar_counts_finished_steps(monkeypatch):
  shown = []
  original = passes._CompletedRate.completed
  monkeypatch.setattr(passes._CompletedRate, 'completed',
                      lambda self, steps: shown.append(original(self, steps)) or shown[-1])
  batch_size, steps = 10, 40
  order = np.zeros((steps, batch_size), np.int32)
  start = time.perf_counter()
  _, metrics, _ = passes.train_epoch(_SlowParallel(), _Feed(), jnp.zeros(()), order, None,
                                     show_progress=True)
  assert metrics['count'] == steps
  assert time.perf_counter() - start >= steps * _STEP_S
  rates = [float(text.split()[0]) for text in shown if text.endswith('images/s')]
  assert rates, shown
  # At most one step's worth of rounding above the device's true rate (200 images/s); a
  # count of dispatched steps would show thousands.
  assert max(rates) <= 1.25 * batch_size / _STEP_S, rates
  assert shown[0] == 'compiled'
