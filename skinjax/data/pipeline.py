"""The input pipeline: uint8 arrays -> per-step batches, device-resident or streamed.

Device-resident (the fast path): a split's uint8 arrays live on every device; each step
sends only an int32[B] index vector and a PRNG key, and the jitted step gathers, augments
and normalises (`Preprocess`). Streamed (for splits beyond the device-memory budget): a
background thread gathers uint8 batches on the host and places them on the devices ahead
of the step; the step then augments and normalises the same way. Both feed one step
function and give the same numbers for the same indices and key.

With several processes (skinjax.train.multihost) each split is divided into data shards,
one per process (`shard_of`); every global batch holds an equal part of each shard
(`train_order`, `eval_order`), and each process gathers only its own part, so it reads
only its own shard of every split from the memory-mapped cache. All processes take the
same number of steps, and one process given the same number of shards
(--config.data_shards) walks the same global batches.
"""

import dataclasses
import queue
import threading
from typing import Iterator

import jax.numpy as jnp
import numpy as np

from skinjax import augment as augment_lib
from skinjax.data.arrays import SplitArrays

PLACEMENTS = ('auto', 'device', 'stream')
# Without memory statistics (XLA:CPU), the budget per device for resident data.
HOST_DEVICE_BUDGET_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Runs inside the jitted step: gather from resident data, augment, normalise.

  images become float32 (x - mean) / std per channel, with mean and std in 0..255 units:
  the default maps to [0, 1], as Keras' `rescale=1/255`; mean 0, std 1 leaves 0..255
  for models that normalise themselves (Keras EfficientNetV2's include_preprocessing).
  """

  augment: augment_lib.AugmentConfig | None = None
  mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
  std: tuple[float, float, float] = (255.0, 255.0, 255.0)

  def __call__(self, batch: dict, data: dict | None, keys, *, train: bool) -> dict:
    """keys: one PRNG key per example of the batch (augmentation), or None."""
    batch = dict(batch)
    if 'index' in batch:
      index = batch.pop('index')
      batch.update({key: value[index] for key, value in data.items()})
    images, masks = batch['image'], batch.get('mask')
    if train and self.augment is not None:
      images, masks = augment_lib.augment_batch(keys, images, masks, config=self.augment)
    batch['image'] = (images.astype(jnp.float32) - jnp.asarray(self.mean, jnp.float32)) / (
        jnp.asarray(self.std, jnp.float32))
    if masks is not None:
      batch['mask'] = masks
    return batch


def arrays_for_device(arrays: SplitArrays) -> dict:
  """The arrays a step gathers from: image, label and (if present) mask."""
  data = {'image': arrays.images, 'label': arrays.labels}
  if arrays.masks is not None:
    data['mask'] = arrays.masks
  return data


def device_budget_bytes(devices) -> int:
  """A quarter of the smallest device's memory (the model needs the rest), or 1 GiB."""
  limits = [(device.memory_stats() or {}).get('bytes_limit') for device in devices]
  if all(limits):
    return min(limits) // 4
  return HOST_DEVICE_BUDGET_BYTES


def choose_placement(arrays: SplitArrays, devices, placement: str = 'auto',
                     budget_bytes: int | None = None) -> str:
  """'device' when a full copy fits every device's budget, else 'stream'."""
  if placement not in PLACEMENTS:
    raise ValueError(f'--data_placement must be one of {PLACEMENTS}, got {placement!r}')
  if placement != 'auto':
    return placement
  budget = device_budget_bytes(devices) if budget_bytes is None else budget_bytes
  return 'device' if arrays.nbytes() <= budget else 'stream'


def shard_of(indices: np.ndarray, num_shards: int) -> np.ndarray:
  """Which data shard owns each example: shard s owns rows s, s + num_shards, ... of a
  split (strided, so every shard keeps the split's class mix)."""
  return np.asarray(indices) % num_shards


def _check_shards(batch_size: int, num_shards: int):
  if num_shards < 1 or batch_size % num_shards:
    raise ValueError(f'batch size {batch_size} is not divisible by the {num_shards} data '
                     'shards (one per process unless --config.data_shards says otherwise)')


def train_order(indices: np.ndarray, batch_size: int, *, epoch: int, seed: int,
                num_shards: int = 1) -> np.ndarray:
  """int32[steps, batch_size]: `indices` shuffled for `epoch`, the remainder dropped
  (every train step has the same shape); steps = len(indices) // batch_size.

  With num_shards > 1, columns [s*L, (s+1)*L) of every batch (L = batch_size /
  num_shards) hold only shard s's examples, shuffled within the shard; a process feeding
  those columns reads only its own shard. A shard a few examples short of steps * L
  starts its shuffle again for the rest (balanced shards differ by a few). Any one
  sharding gives the same order wherever it runs: 2 processes, or 1 with data_shards=2.
  """
  indices = np.asarray(indices)
  steps = len(indices) // batch_size
  if num_shards == 1:
    order = np.random.default_rng([seed, epoch]).permutation(indices)
    return order[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)
  _check_shards(batch_size, num_shards)
  per_shard = batch_size // num_shards
  owners = shard_of(indices, num_shards)
  columns = []
  for shard in range(num_shards):
    own = np.random.default_rng([seed, epoch, shard]).permutation(indices[owners == shard])
    if len(own) == 0:
      raise ValueError(f'data shard {shard} of {num_shards} has no training examples')
    own = np.resize(own, steps * per_shard)  # repeats from the start when short
    columns.append(own.reshape(steps, per_shard))
  return np.concatenate(columns, axis=1).astype(np.int32)


def eval_order(num_examples: int, batch_size: int, num_shards: int = 1) -> list[dict]:
  """Every example once, in full-size batches {'index': int32[B], 'valid': bool[B]}.

  Columns [s*L, (s+1)*L) hold shard s's examples in order; each shard's last batch is
  padded (valid False, index repeating the shard's first example) so that every batch
  has one shape and no process reads outside its shard.
  """
  _check_shards(batch_size, num_shards)
  per_shard = batch_size // num_shards
  shards = [np.arange(shard, num_examples, num_shards) for shard in range(num_shards)]
  steps = max(-(-len(rows) // per_shard) for rows in shards)
  batches = []
  for step in range(steps):
    index, valid = [], []
    for rows in shards:
      part = rows[step * per_shard:(step + 1) * per_shard]
      padding = per_shard - len(part)
      filler = rows[:1] if len(rows) else np.zeros(1, np.int64)
      index.append(np.concatenate([part, np.repeat(filler, padding)]))
      valid.append(np.arange(per_shard) < len(part))
    batches.append({'index': np.concatenate(index).astype(np.int32),
                    'valid': np.concatenate(valid)})
  return batches


class InputPipeline:
  """Feeds one split to a parallel wrapper's steps, resident or streamed.

  Use `data` as the steps' `data` argument; iterate `batches(index_batches)` for the
  per-step batches, already on the devices.
  """

  def __init__(self, arrays: SplitArrays, parallel, *, placement: str = 'auto',
               budget_bytes: int | None = None, prefetch: int = 2):
    self.arrays = arrays
    self.parallel = parallel
    if getattr(parallel, 'multiprocess', False):
      # Resident data would be one global array replicated on every device, so every
      # process would hold the whole split (the run spec refuses 'device' there).
      placement = 'stream'
    self.placement = choose_placement(arrays, parallel.devices, placement, budget_bytes)
    self.prefetch = prefetch
    self.data = (parallel.replicate(arrays_for_device(arrays))
                 if self.placement == 'device' else None)

  def _host_batch(self, batch) -> dict:
    """This process's rows of a global batch: an int32 index array (training) or an
    eval_order dict with its `valid` mask."""
    batch = dict(batch) if isinstance(batch, dict) else {'index': batch}
    rows = self.parallel.local_rows(len(batch['index']))
    batch = {key: np.asarray(value)[rows] for key, value in batch.items()}
    if self.placement == 'stream':
      index = batch.pop('index')
      batch.update({key: np.asarray(value[index])
                    for key, value in arrays_for_device(self.arrays).items()})
    return batch

  def batches(self, order) -> Iterator[dict]:
    """Device batches for each item of `order` (train_order rows or eval_order dicts)."""
    if self.placement == 'device':
      for batch in order:
        yield self.parallel.shard_batch(self._host_batch(batch))
      return
    yield from _prefetched(
        (self.parallel.shard_batch(self._host_batch(batch)) for batch in order),
        self.prefetch)


def _prefetched(iterator, depth: int):
  """Runs `iterator` in a background thread, `depth` items ahead of the consumer."""
  items: queue.Queue = queue.Queue(maxsize=depth)
  done = object()
  stop = threading.Event()

  def produce():
    try:
      for item in iterator:
        if stop.is_set():
          return
        items.put(item)
      items.put(done)
    except BaseException as error:  # handed to the consumer, raised there
      items.put(error)

  thread = threading.Thread(target=produce, daemon=True)
  thread.start()
  try:
    while True:
      item = items.get()
      if item is done:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()
    while thread.is_alive():  # unblock a producer waiting on a full queue
      try:
        items.get_nowait()
      except queue.Empty:
        thread.join(0.01)
