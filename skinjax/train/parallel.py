"""Data parallelism over local devices: one step function, two wrappers.

- `pmap` (the default the project's brief asks for): state replicated with a leading
  device axis, the batch reshaped to [devices, B / devices, ...], collectives named in the
  step. Since JAX 0.10 `pmap` runs as `jit(shard_map)` underneath.
- `jit`: a 1-D `Mesh` over a `data` axis; state replicated, the batch sharded on its
  first dimension with `NamedSharding`, collectives inserted by XLA (JAX's recommended
  path).

Both donate the state and metrics buffers and give the same numbers for the same global
batch. Nothing here synchronises with the host except `fetch`, and on the CPU backend
with several devices a wait every `CPU_COLLECTIVE_WINDOW` steps (see `_StepWindow`).

`jit` also spans several processes (skinjax.train.multihost): its mesh then holds every
process's devices, each process passes its own rows of the global batch (`local_rows`),
and `fetch` and `outputs_to_host` bring results back to every process. `pmap` refuses.
"""

import functools

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from skinjax.train import steps

PARALLEL_MODES = ('pmap', 'jit')
PMAP_AXIS = 'batch'


def batch_size_problem(batch_size: int, num_devices: int) -> str | None:
  """The one rule for a batch over devices: every device takes an equal share."""
  if batch_size <= 0 or batch_size % num_devices:
    return f'must be a positive multiple of the {num_devices} device(s)'
  return None


def check_batch_size(batch_size: int, num_devices: int, *, what: str = 'global batch size'):
  problem = batch_size_problem(batch_size, num_devices)
  if problem:
    raise ValueError(f'{what} {batch_size}: {problem}')


# XLA:CPU (jaxlib 0.10) deadlocks in the all-reduce rendezvous of virtual CPU devices
# when hundreds of collective steps are queued at once: the run aborts after 40 s with
# "Expected N threads to join". Waiting for the devices every 16 steps never did in our
# measurements (every 64 did). Real accelerators keep their queue unbounded.
CPU_COLLECTIVE_WINDOW = 16


class _StepWindow:
  """Counts dispatched steps; on multi-device CPU, waits for the devices every window."""

  def __init__(self, devices):
    multi_cpu = len(devices) > 1 and devices[0].platform == 'cpu'
    self.window = CPU_COLLECTIVE_WINDOW if multi_cpu else 0
    self.dispatched = 0

  def after(self, outputs):
    self.dispatched += 1
    if self.window and self.dispatched % self.window == 0:
      jax.block_until_ready(outputs)
    return outputs


class PmapParallel:
  """`jax.pmap` over `devices`.

  With `sync_batch_norm` (the default) BatchNorm computes its statistics over the global
  batch, so results match one device; without it each device normalises by its own
  shard's statistics (cheaper across hosts, as timm's default), and results differ.
  """

  mode = 'pmap'

  def __init__(self, model, task, devices=None, *, preprocess=None,
               sync_batch_norm: bool = True, skip_nonfinite: bool = False):
    if jax.process_count() > 1:  # the run spec refuses this first (spec.check_layout)
      raise ValueError(f'pmap runs in one process only, not {jax.process_count()}; use jit')
    self.devices = list(devices or jax.local_devices())
    self.num_devices = len(self.devices)
    self.task = task
    # Place inputs exactly as pmap places its outputs: state and metrics fed back from a
    # step and fresh ones from `replicate` then hit one compiled program, not two.
    probe = jax.pmap(lambda x: x, axis_name=PMAP_AXIS, devices=self.devices)(
        np.zeros((self.num_devices, 1), np.int8))
    self._stacked = probe.sharding
    self._window = _StepWindow(self.devices)
    if sync_batch_norm:
      model = model.clone(axis_name=PMAP_AXIS)
    pmap = functools.partial(jax.pmap, axis_name=PMAP_AXIS, devices=self.devices)
    bound = dict(model=model, task=task, preprocess=preprocess, axis_name=PMAP_AXIS)
    self._train = pmap(functools.partial(steps.train_step, **bound,
                                         skip_nonfinite=skip_nonfinite),
                       in_axes=(0, 0, 0, None, 0), donate_argnums=(0, 1))
    self._eval = pmap(functools.partial(steps.eval_step, **bound), donate_argnums=(1,))

  def replicate(self, tree):
    """One copy of `tree` per device, stacked on a new leading axis."""
    # A fresh host copy per leaf: no two leaves (nor the caller's arrays) share a buffer,
    # which donation would refuse.
    def put(x):
      return jax.device_put(np.stack([np.asarray(x)] * self.num_devices), self._stacked)
    return jax.tree.map(put, tree)

  def shard_batch(self, batch):
    """Host arrays [B, ...] -> [devices, B / devices, ...] on the devices."""
    def put(x):
      check_batch_size(x.shape[0], self.num_devices)
      x = np.asarray(x)
      return jax.device_put(x.reshape((self.num_devices, -1) + x.shape[1:]), self._stacked)
    return jax.tree.map(put, batch)

  def fetch(self, tree):
    """The first replica of a replicated `tree`, as host numpy arrays."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree)

  def local_rows(self, size: int) -> slice:
    """This process's rows of a global batch of `size`: all of them (one process)."""
    return slice(0, size)

  def train_step(self, state, metrics, batch, rng, data=None):
    return self._window.after(self._train(state, metrics, batch, rng, data))

  def eval_step(self, state, metrics, batch, data=None):
    return self._window.after(self._eval(state, metrics, batch, data))

  def outputs_to_host(self, outputs):
    """Host numpy arrays [B, ...] of an eval step's per-example outputs, in batch order."""
    return jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), outputs)


class JitParallel:
  """`jax.jit` with the batch sharded over a 1-D `data` mesh."""

  mode = 'jit'

  def __init__(self, model, task, devices=None, *, preprocess=None,
               skip_nonfinite: bool = False):
    # Default: every process's devices (the local ones when there is one process).
    self.devices = list(devices or jax.devices())
    self.num_devices = len(self.devices)
    self.task = task
    self.multiprocess = any(d.process_index != jax.process_index() for d in self.devices)
    self.mesh = Mesh(np.array(self.devices), ('data',))
    self._replicated = NamedSharding(self.mesh, P())
    self._sharded = NamedSharding(self.mesh, P('data'))
    self._window = _StepWindow(self.devices)
    replicated, sharded = self._replicated, self._sharded
    bound = dict(model=model, task=task, preprocess=preprocess)
    # Device-resident data is replicated: each device gathers its shard of the batch
    # from its own copy, with no communication.
    self._train = jax.jit(
        functools.partial(steps.train_step, **bound, skip_nonfinite=skip_nonfinite),
        in_shardings=(replicated, replicated, sharded, replicated, replicated),
        out_shardings=(replicated, replicated), donate_argnums=(0, 1))
    self._eval = jax.jit(
        functools.partial(steps.eval_step, **bound),
        in_shardings=(replicated, replicated, sharded, replicated),
        out_shardings=(replicated, sharded), donate_argnums=(1,))

  def replicate(self, tree):
    """`tree` copied to every device (fresh buffers, as PmapParallel.replicate)."""
    return jax.tree.map(lambda x: jax.device_put(np.array(x), self._replicated), tree)

  def local_rows(self, size: int) -> slice:
    """This process's rows of a global batch of `size` (as `shard_batch` expects them)."""
    if not self.multiprocess:
      return slice(0, size)
    check_batch_size(size, self.num_devices)
    spans = [index[0] for index
             in self._sharded.addressable_devices_indices_map((size,)).values()]
    rows = slice(min(s.start for s in spans), max(s.stop for s in spans))
    if rows.stop - rows.start != sum(s.stop - s.start for s in spans):
      raise ValueError(f'this process\'s devices hold rows {spans} of the batch, which are '
                       'not contiguous; order the devices by process')
    return rows

  def shard_batch(self, batch):
    """Host arrays -> one global array sharded over the mesh. With several processes each
    passes its `local_rows` of the global batch."""
    if self.multiprocess:
      local = len(self._sharded.addressable_devices)
      for x in jax.tree.leaves(batch):
        check_batch_size(x.shape[0], local, what='per-process batch size')
      return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
          self._sharded, np.asarray(x)), batch)
    for x in jax.tree.leaves(batch):
      check_batch_size(x.shape[0], self.num_devices)
    return jax.device_put(batch, self._sharded)

  def fetch(self, tree):
    """A replicated `tree` as host numpy arrays."""
    if self.multiprocess:  # a global array cannot be fetched whole; any replica will do
      return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)
    return jax.device_get(tree)

  def train_step(self, state, metrics, batch, rng, data=None):
    return self._window.after(self._train(state, metrics, batch, rng, data))

  def eval_step(self, state, metrics, batch, data=None):
    return self._window.after(self._eval(state, metrics, batch, data))

  def outputs_to_host(self, outputs):
    """Host numpy arrays [B, ...] of an eval step's per-example outputs, in batch order
    (the whole global batch, in every process)."""
    if self.multiprocess:
      return jax.tree.map(np.asarray, multihost_utils.process_allgather(outputs, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(outputs))


def make_parallel(mode: str, model, task, devices=None, *, preprocess=None,
                  skip_nonfinite: bool = False):
  """The wrapper for `mode` ('pmap' or 'jit') over `devices` (default: pmap all local,
  jit all of every process's).

  preprocess: optional skinjax.data.pipeline.Preprocess run inside each step.
  skip_nonfinite: skip (and count) non-finite updates instead of withholding all later
    ones (see skinjax.train.steps.train_step).
  """
  if mode == 'pmap':
    return PmapParallel(model, task, devices, preprocess=preprocess,
                        skip_nonfinite=skip_nonfinite)
  if mode == 'jit':
    return JitParallel(model, task, devices, preprocess=preprocess,
                       skip_nonfinite=skip_nonfinite)
  raise ValueError(f'--parallel must be one of {PARALLEL_MODES}, got {mode!r}')
