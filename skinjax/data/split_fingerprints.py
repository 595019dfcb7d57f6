"""Fingerprints (pixel digest, perceptual hashes, grey thumbnail, size) of a prepared TFDS split, cached on disk.

Computed once per split and kept beside the resized-array cache of skinjax.data.arrays:
`<data_dir>/skinjax_arrays/<name>/<config>/<version>/<split>-fingerprints-<key>/`. The key
hashes the split's data files (names, sizes, modification times), the dataset's
dataset_info.json and FORMAT, so a dataset rebuilt in place, or fingerprints computed by
an older rule, are never read as current. The folder is written under a temporary name and
renamed, as the array cache is. Examples are in the order `builder.as_data_source(split)`
yields them (the order skinjax.data.arrays.load_split uses).
"""

import dataclasses
import hashlib
import io
import os
from pathlib import Path
import shutil
from typing import Callable

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from skinjax.data import arrays, image_hash

# Bump when what is stored, or how it is computed, changes: old caches then go unread.
FORMAT = 'fingerprints-3'  # 3: the 64x64 thumbnails, for crop_match


@dataclasses.dataclass
class Fingerprints:
  """One fingerprint per image, row i for example i."""

  digest: np.ndarray  # uint8[N, 32], SHA-256 of the decoded pixels and their shape
  phash: np.ndarray  # uint64[N], imagehash.phash as an integer (skinjax.data.image_hash)
  fine: np.ndarray  # uint64[N, 4], the 256-bit hash (image_hash.fine_hash)
  size: np.ndarray  # int32[N, 2], (height, width) as stored
  image_ids: np.ndarray  # str[N]
  thumbnail: np.ndarray  # uint8[N, 64, 64], grey (image_hash.fingerprints; crop_match)

  def __len__(self):
    return len(self.phash)

  @staticmethod
  def concatenate(parts: list['Fingerprints']) -> 'Fingerprints':
    return Fingerprints(*(np.concatenate([getattr(p, f.name) for p in parts])
                          for f in dataclasses.fields(Fingerprints)))


_FIELDS = tuple(f.name for f in dataclasses.fields(Fingerprints))


def cache_key(builder, split: str) -> str:
  """16 hex digits that change whenever the split's stored data (or FORMAT) does."""
  key = hashlib.sha256(FORMAT.encode())
  data_path = Path(builder.data_path)
  info = data_path / 'dataset_info.json'
  key.update(info.read_bytes() if info.exists() else b'')
  for path in sorted(os.fspath(p) for p in builder.info.splits[split].filepaths):
    stat = os.stat(path)
    key.update(f'{os.path.basename(path)}:{stat.st_size}:{stat.st_mtime_ns}\n'.encode())
  return key.hexdigest()[:16]


def cache_path(builder, split: str, cache_dir) -> Path:
  config = builder.builder_config.name if builder.builder_config else 'default'
  return (Path(cache_dir) / builder.name / config / str(builder.version) /
          f'{split}-fingerprints-{cache_key(builder, split)}')


def _read(path: Path) -> Fingerprints:
  return Fingerprints(*(np.load(path / f'{name}.npy', allow_pickle=False) for name in _FIELDS))


def _write(path: Path, fingerprints: Fingerprints):
  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(f'.{path.name}.{os.getpid()}.partial')
  shutil.rmtree(partial, ignore_errors=True)
  partial.mkdir()
  for name in _FIELDS:
    np.save(partial / f'{name}.npy', getattr(fingerprints, name), allow_pickle=False)
  try:
    os.rename(partial, path)
  except OSError:  # another process renamed its identical copy first
    shutil.rmtree(partial, ignore_errors=True)
    if not path.is_dir():
      raise


def decode_stored(data: bytes) -> np.ndarray:
  """uint8[H, W, 3] from an image feature's stored bytes (the pixels TFDS decodes)."""
  image = Image.open(io.BytesIO(data))
  return np.asarray(image.convert('RGB') if image.mode != 'RGB' else image)


def stored_examples(builder, split: str):
  """The examples of `split` in `as_data_source` order, their images left encoded; a build
  in another format than array_record (the stock `tfds build` writes tfrecord) is read
  in file order, which is the same order."""
  skip = {'image': tfds.decode.SkipDecoding()}
  if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
    source = builder.as_data_source(split=split, decoders=skip)
    return (source[i] for i in range(len(source)))
  return tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False, decoders=skip))


def compute(builder, split: str, *, progress: Callable[[int], None] | None = None
            ) -> Fingerprints:
  """Fingerprints of every example of a prepared split, without the cache."""
  image_ids = []

  def stored_images():
    for example in stored_examples(builder, split):
      image_id = example['image_id']
      image_ids.append(image_id.decode() if isinstance(image_id, bytes) else str(image_id))
      yield example['image']

  found = image_hash.fingerprints(stored_images(), decode_stored, progress=progress)
  return Fingerprints(found.digest, found.phash, found.fine, found.size,
                      np.array(image_ids, dtype=str), found.thumbnail)


def load(builder, split: str, *, cache_dir=None,
         progress: Callable[[int], None] | None = None) -> Fingerprints:
  """The fingerprints of `split` of the prepared `builder`, from the cache or computed once.

  cache_dir defaults to `<data_dir>/skinjax_arrays` (arrays.cache_root).
  """
  if split not in builder.info.splits:
    raise ValueError(f'{builder.info.full_name} has no split {split!r} (it has '
                     f'{", ".join(sorted(builder.info.splits))})')
  cache_dir = cache_dir or arrays.cache_root(builder)
  path = cache_path(builder, split, cache_dir)
  if path.is_dir():
    return _read(path)
  fingerprints = compute(builder, split, progress=progress)
  _write(path, fingerprints)
  return _read(path)
