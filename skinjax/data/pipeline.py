"""The input pipeline: uint8 arrays -> per-step batches, device-resident or streamed.

Device-resident (the fast path): a split's uint8 arrays live on every device; each step
sends only an int32[B] index vector and a PRNG key, and the jitted step gathers, augments
and normalises (`Preprocess`). Streamed (for splits beyond the device-memory budget): a
background thread gathers uint8 batches on the host and places them on the devices ahead
of the step; the step then augments and normalises the same way. Both feed one step
function and give the same numbers for the same indices and key.

With several processes (skinjax.train.multihost) every process walks the same global
index batches and gathers only its own rows of each (its shard of every batch of every
split), so all take the same number of steps and the run matches one process's on the
same global batches. Each process's batches then differ, so they stream.
"""

import dataclasses
import queue
import threading
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from skinjax import augment as augment_lib
from skinjax.data.arrays import SplitArrays
from skinjax.train.evaluate import pad_batch

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

  def __call__(self, batch: dict, data: dict | None, rng, *, train: bool) -> dict:
    batch = dict(batch)
    if 'index' in batch:
      index = batch.pop('index')
      batch.update({key: value[index] for key, value in data.items()})
    images, masks = batch['image'], batch.get('mask')
    if train and self.augment is not None:
      images, masks = augment_lib.augment_batch(rng, images, masks, config=self.augment)
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


def train_order(indices: np.ndarray, batch_size: int, *, epoch: int, seed: int) -> np.ndarray:
  """int32[steps, batch_size]: `indices` shuffled for `epoch`, the remainder dropped
  (every train step has the same shape)."""
  order = np.random.default_rng([seed, epoch]).permutation(np.asarray(indices))
  steps = len(order) // batch_size
  return order[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def eval_order(num_examples: int, batch_size: int) -> list[np.ndarray]:
  """Sequential int32 index batches; the last one may be short (evaluation pads it)."""
  return [np.arange(start, min(start + batch_size, num_examples), dtype=np.int32)
          for start in range(0, num_examples, batch_size)]


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
      # process would have to hold the whole split.
      if placement == 'device':
        raise ValueError('--config.data_placement=device: a run over several processes '
                         'streams each process\'s rows; use auto or stream')
      placement = 'stream'
    self.placement = choose_placement(arrays, parallel.devices, placement, budget_bytes)
    self.prefetch = prefetch
    self.data = (parallel.replicate(arrays_for_device(arrays))
                 if self.placement == 'device' else None)

  def _host_batch(self, index: np.ndarray, pad_to: int | None) -> dict:
    """This process's rows of the global batch `index` (padded to `pad_to`)."""
    batch = pad_batch({'index': index}, pad_to) if pad_to else {'index': index}
    rows = self.parallel.local_rows(len(batch['index']))
    batch = {key: value[rows] for key, value in batch.items()}
    if self.placement == 'stream':
      index = batch.pop('index')
      batch.update({key: value[index] for key, value in arrays_for_device(self.arrays).items()})
    return batch

  def batches(self, index_batches, *, pad_to: int | None = None) -> Iterator[dict]:
    """Device batches for each int32 index array; `pad_to` pads short ones (evaluation)."""
    if self.placement == 'device':
      for index in index_batches:
        yield self.parallel.shard_batch(self._host_batch(index, pad_to))
      return
    yield from _prefetched(
        (self.parallel.shard_batch(self._host_batch(index, pad_to)) for index in index_batches),
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
