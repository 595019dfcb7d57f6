"""Which images of one prepared split also appear, by pixels, in splits of another dataset.

For cross-dataset evaluation and pretraining without leaks: score a HAM10000-trained model
on ISIC9 leaving out ISIC9's images that HAM10000's train split holds, or pretrain on
HAM10000 leaving out the images ISIC9 validates and tests on. Images match when they are
exact or near-duplicates (skinjax.data.duplicates), whatever their file names.
"""

import dataclasses
from typing import Sequence

import numpy as np

from skinjax.data import duplicates, image_hash, split_fingerprints


@dataclasses.dataclass
class Overlap:
  """The target split's examples found among the source splits.

  mask[i] is True when example i of the target split (in `as_data_source` order) matches
  at least one source example; each matched pair is one row of the pair arrays.
  """

  mask: np.ndarray  # bool[N_target]
  target_index: np.ndarray  # int64[P]
  target_id: np.ndarray  # str[P], the target example's image_id
  source_split: np.ndarray  # str[P]
  source_index: np.ndarray  # int64[P], into that source split
  source_id: np.ndarray  # str[P]
  distance: np.ndarray  # int32[P], 64-bit perceptual-hash bits that differ
  fine_distance: np.ndarray  # int32[P], 256-bit hash bits that differ
  exact: np.ndarray  # bool[P], equal decoded pixels
  max_distance: int  # the thresholds used (duplicates.find_pairs)
  confirm_distance: int

  @property
  def count(self) -> int:
    """How many target examples matched."""
    return int(self.mask.sum())

  def by_class(self, labels, class_names: Sequence[str]) -> dict[str, int]:
    """Matched target examples per class, given the target split's int labels."""
    labels = np.asarray(labels)
    return {name: int(self.mask[labels == c].sum()) for c, name in enumerate(class_names)}

  def pairs(self) -> list[dict]:
    """The matched pairs as JSON-ready rows (for a run's metadata or a report)."""
    return [{'target_index': int(t), 'target_id': str(tid), 'source_split': str(s),
             'source_index': int(i), 'source_id': str(sid), 'distance': int(d),
             'fine_distance': int(f), 'exact': bool(e)}
            for t, tid, s, i, sid, d, f, e in zip(
                self.target_index, self.target_id, self.source_split, self.source_index,
                self.source_id, self.distance, self.fine_distance, self.exact)]


def overlap(source_builder, source_splits: Sequence[str], target_builder, target_split: str,
            *, max_distance: int | None = None, confirm_distance: int | None = None,
            cache_dir=None) -> Overlap:
  """Marks the examples of `target_split` whose image appears among `source_splits`.

  Both builders must be prepared; their fingerprints are computed once per split and cached
  (skinjax.data.split_fingerprints; cache_dir as there). max_distance, confirm_distance:
  the near-duplicate thresholds of duplicates.find_pairs (defaults
  image_hash.NEAR_DUPLICATE_BITS and CONFIRM_BITS; max_distance < 0: exact copies only).
  """
  source_splits = [source_splits] if isinstance(source_splits, str) else list(source_splits)
  if not source_splits:
    raise ValueError('overlap: no source split given')
  max_distance = image_hash.NEAR_DUPLICATE_BITS if max_distance is None else int(max_distance)
  confirm_distance = (image_hash.CONFIRM_BITS if confirm_distance is None
                      else int(confirm_distance))
  target = split_fingerprints.load(target_builder, target_split, cache_dir=cache_dir)
  mask = np.zeros(len(target), bool)
  columns = {name: [] for name in ('target_index', 'target_id', 'source_split',
                                   'source_index', 'source_id', 'distance', 'fine_distance',
                                   'exact')}
  for split in source_splits:
    source = split_fingerprints.load(source_builder, split, cache_dir=cache_dir)
    pairs = duplicates.find_pairs(target, source, max_distance=max_distance,
                                  confirm_distance=confirm_distance)
    mask[pairs.left] = True
    columns['target_index'].append(pairs.left)
    columns['target_id'].append(target.image_ids[pairs.left])
    columns['source_split'].append(np.full(len(pairs), split, dtype=f'U{len(split)}'))
    columns['source_index'].append(pairs.right)
    columns['source_id'].append(source.image_ids[pairs.right])
    columns['distance'].append(pairs.distance)
    columns['fine_distance'].append(pairs.fine_distance)
    columns['exact'].append(pairs.exact)
  arrays = {name: np.concatenate(values) for name, values in columns.items()}
  order = np.lexsort((arrays['source_index'], arrays['source_split'], arrays['target_index']))
  return Overlap(mask=mask, max_distance=max_distance, confirm_distance=confirm_distance,
                 **{name: value[order] for name, value in arrays.items()})
