"""A prepared TFDS split, decoded and resized once to the model's resolution, cached on disk.

The cache holds uint8 arrays (images [N, S, S, 3], masks [N, S, S, 1] in {0, 1}) plus
int32 labels and the image ids, as one folder of .npy files per (dataset, config,
version, split, resolution, and the prepared split's identity: `split_identity`). The folder is written under a temporary name and renamed,
so an interrupted write never leaves a cache that loads. Images and masks load
memory-mapped: a process reads from disk only the rows it gathers (with several
processes, its own shard; see skinjax.data.pipeline).
"""

import dataclasses
import hashlib
import os
from pathlib import Path
import shutil

import numpy as np
from PIL import Image

from skinjax.data import threads


@dataclasses.dataclass
class SplitArrays:
  """One split at one resolution, on the host."""

  images: np.ndarray  # uint8[N, S, S, 3]
  labels: np.ndarray  # int32[N]
  image_ids: np.ndarray  # str[N]
  masks: np.ndarray | None = None  # uint8[N, S, S, 1], {0, 1}

  def __len__(self):
    return len(self.labels)

  def take(self, indices) -> 'SplitArrays':
    """The examples at `indices` (repeats allowed), in that order."""
    return SplitArrays(self.images[indices], self.labels[indices], self.image_ids[indices],
                       None if self.masks is None else self.masks[indices])

  @staticmethod
  def concatenate(parts: list['SplitArrays']) -> 'SplitArrays':
    masks = [p.masks for p in parts]
    return SplitArrays(np.concatenate([p.images for p in parts]),
                       np.concatenate([p.labels for p in parts]),
                       np.concatenate([p.image_ids for p in parts]),
                       None if any(m is None for m in masks) else np.concatenate(masks))

  def nbytes(self) -> int:
    return self.images.nbytes + (0 if self.masks is None else self.masks.nbytes)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
  """uint8[H, W, 3] -> uint8[size, size, 3]; PIL's bilinear filter widens its support when
  shrinking, so a 600x450 image averages down to 28x28 instead of aliasing."""
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
  """{0, 1}[H, W, 1] -> {0, 1}[size, size, 1]: area-weighted, then the majority wins."""
  scaled = Image.fromarray(mask[..., 0] * 255).resize((size, size), Image.BILINEAR)
  return (np.asarray(scaled) > 127).astype(np.uint8)[..., None]


def _decoded_examples(builder, split):
  """Decoded examples of `split`, as numpy dicts, through random access when possible."""
  # Here, not at the top: SplitArrays and the pipeline run where TFDS is not installed.
  import tensorflow_datasets as tfds
  if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
    source = builder.as_data_source(split=split)
    return (source[i] for i in range(len(source))), len(source)
  dataset = builder.as_dataset(split=split, shuffle_files=False)
  return tfds.as_numpy(dataset), builder.info.splits[split].num_examples


def cache_root(builder) -> Path:
  """<data_dir>/skinjax_arrays, for a builder made in data_dir or reopened from its folder
  (tfds.builder_from_directory, whose data_dir_root is the folder itself)."""
  depth = len(builder.info.full_name.split('/'))  # name[/config]/version
  return Path(builder.data_path).parents[depth - 1] / 'skinjax_arrays'


def split_identity(builder, split: str) -> str:
  """16 hex digits naming one prepared split: its dataset_info.json (example counts,
  file lists) and its data files' names, sizes and times. A dataset rebuilt in place, even
  at the same version, gets another identity, so it never meets the cache of the old."""
  key = hashlib.sha256()
  info = Path(builder.data_path) / 'dataset_info.json'
  key.update(info.read_bytes() if info.exists() else b'')
  for path in sorted(os.fspath(p) for p in builder.info.splits[split].filepaths):
    stat = os.stat(path)
    key.update(f'{os.path.basename(path)}:{stat.st_size}:{stat.st_mtime_ns}\n'.encode())
  return key.hexdigest()[:16]


def cache_path(builder, split: str, size: int, cache_dir) -> Path:
  config = builder.builder_config.name if builder.builder_config else 'default'
  return (Path(cache_dir) / builder.name / config / str(builder.version) /
          f'{split}-{size}-{split_identity(builder, split)}')


_FIELDS = ('images', 'labels', 'image_ids', 'masks')


def _read_cache(path: Path) -> SplitArrays:
  def read(name, mmap):
    file = path / f'{name}.npy'
    return np.load(file, mmap_mode='r' if mmap else None, allow_pickle=False) \
        if file.exists() else None
  return SplitArrays(read('images', True), read('labels', False), read('image_ids', False),
                     read('masks', True))


def _write_cache(path: Path, arrays: SplitArrays):
  """Writes the folder under a temporary name, then renames it into place."""
  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(f'.{path.name}.{os.getpid()}.partial')
  shutil.rmtree(partial, ignore_errors=True)
  partial.mkdir()
  for name in _FIELDS:
    value = getattr(arrays, name)
    if value is not None:
      np.save(partial / f'{name}.npy', value, allow_pickle=False)
  try:
    os.rename(partial, path)
  except OSError:  # another process renamed its identical copy first
    shutil.rmtree(partial, ignore_errors=True)
    if not path.is_dir():
      raise


def load_split(builder, split: str, size: int, *, cache_dir=None) -> SplitArrays:
  """The examples of `split` resized to size x size, from the cache or decoded once.

  cache_dir defaults to `<data_dir>/skinjax_arrays` (arrays.cache_root).
  """
  cache_dir = cache_dir or cache_root(builder)
  path = cache_path(builder, split, size, cache_dir)
  if path.is_dir():
    return _read_cache(path)
  examples, count = _decoded_examples(builder, split)
  has_masks = 'mask' in builder.info.features

  def convert(example):
    mask = resize_mask(example['mask'], size) if has_masks else None
    image_id = example['image_id']
    return (resize_image(example['image'], size), mask, int(example['label']),
            image_id.decode() if isinstance(image_id, bytes) else str(image_id))

  converted = list(threads.map_in_threads(convert, examples))
  if len(converted) != count:
    raise ValueError(f'{builder.info.full_name}[{split}]: read {len(converted)} examples, '
                     f'the dataset info promises {count}')
  arrays = SplitArrays(
      images=np.stack([c[0] for c in converted]) if converted else
      np.zeros((0, size, size, 3), np.uint8),
      labels=np.array([c[2] for c in converted], np.int32),
      image_ids=np.array([c[3] for c in converted], dtype=str),
      masks=(np.stack([c[1] for c in converted]) if converted else
             np.zeros((0, size, size, 1), np.uint8)) if has_masks else None)
  _write_cache(path, arrays)
  return _read_cache(path)
