"""Copies among images: exact and near-duplicate pairs from fingerprints, and their groups.

A pair is an exact duplicate when the two images decode to equal pixels (equal
`image_hash.pixel_digest`), and a near-duplicate when their 64-bit perceptual hashes differ
in at most `max_distance` bits (default image_hash.NEAR_DUPLICATE_BITS) and their 256-bit
hashes in at most `confirm_distance` (default image_hash.CONFIRM_BITS), or when one is a
crop of the other (skinjax.data.crop_match: up to 12.5% of each side, found from the
fingerprints' 64x64 thumbnails). Groups are the connected components of the pairs: copies
of copies are one group.
"""

import dataclasses

import numpy as np

from skinjax.data import crop_match, image_hash

# Rows of the first set compared at once: 1024 x 12,000 distances are 12 MB.
CHUNK = 1024


@dataclasses.dataclass
class Pairs:
  """Matched pairs (left[p] in the first set, right[p] in the second, or the same set)."""

  left: np.ndarray  # int64[P]
  right: np.ndarray  # int64[P]
  distance: np.ndarray  # int32[P], 64-bit perceptual-hash bits that differ
  fine_distance: np.ndarray  # int32[P], 256-bit hash bits that differ
  exact: np.ndarray  # bool[P], equal decoded pixels
  # int8[P]: 0 matched whole (or equal pixels), LEFT_IS_CROP, RIGHT_IS_CROP: matched only
  # as a crop (crop_match), the crop being the window `crop` of the other image.
  cropped: np.ndarray
  crop: np.ndarray  # float32[P, 4], (left, top, right, bottom) fractions cut; 0 if whole
  crop_distance: np.ndarray  # int32[P], 256-bit bits differing at that window; -1 if whole

  def __len__(self):
    return len(self.left)

  def select(self, keep) -> 'Pairs':
    return Pairs(*(getattr(self, f.name)[keep] for f in dataclasses.fields(Pairs)))

  def swapped(self) -> 'Pairs':
    """The same pairs with left and right exchanged."""
    cropped = np.select([self.cropped == LEFT_IS_CROP, self.cropped == RIGHT_IS_CROP],
                        [RIGHT_IS_CROP, LEFT_IS_CROP], 0).astype(np.int8)
    return dataclasses.replace(self, left=self.right, right=self.left, cropped=cropped)

  @staticmethod
  def concatenate(parts: list['Pairs']) -> 'Pairs':
    return Pairs(*(np.concatenate([getattr(p, f.name) for p in parts])
                   for f in dataclasses.fields(Pairs)))


LEFT_IS_CROP, RIGHT_IS_CROP = 1, 2


def _digest_keys(digest: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(digest, np.uint8).view(f'V{digest.shape[1]}').ravel()


def find_pairs(first, second=None, *, max_distance: int | None = None,
               confirm_distance: int | None = None, crops: bool = True) -> Pairs:
  """Exact and near-duplicate pairs, sorted by (left, right).

  first, second: anything with `.digest` (uint8[N, 32]), `.phash` (uint64[N]) and `.fine`
    (uint64[N, 4]), e.g. skinjax.data.split_fingerprints.Fingerprints. With one set, pairs
    are i < j within it; with two, every (i in first, j in second).
  max_distance: the 64-bit threshold in bits (default NEAR_DUPLICATE_BITS); negative:
    exact duplicates only. confirm_distance: the 256-bit threshold (default CONFIRM_BITS).
  crops: also pairs where one image is a crop of the other (crop_match, its own
    thresholds), when both sets have `.thumbnail` (uint8[N, 64, 64]) and max_distance >= 0.
  """
  max_distance = image_hash.NEAR_DUPLICATE_BITS if max_distance is None else max_distance
  confirm_distance = (image_hash.CONFIRM_BITS if confirm_distance is None
                      else confirm_distance)
  within = second is None
  second = first if within else second
  left, right = [], []
  a, b = np.asarray(first.phash, np.uint64), np.asarray(second.phash, np.uint64)
  fine_a, fine_b = np.asarray(first.fine, np.uint64), np.asarray(second.fine, np.uint64)
  if max_distance >= 0:
    for start in range(0, len(a), CHUNK):
      distances = image_hash.hamming(a[start:start + CHUNK, None], b[None, :])
      close = distances <= max_distance
      if within:  # j > i only
        close &= np.arange(len(b))[None, :] > np.arange(start, start + len(distances))[:, None]
      rows, cols = np.nonzero(close)
      rows += start
      confirmed = image_hash.fine_hamming(fine_a[rows], fine_b[cols]) <= confirm_distance
      left.append(rows[confirmed])
      right.append(cols[confirmed])
  # Equal pixels always match, whatever the threshold (their hashes are equal too).
  keys_a, keys_b = _digest_keys(first.digest), _digest_keys(second.digest)
  where_b: dict[bytes, list[int]] = {}
  for j, key in enumerate(keys_b):
    where_b.setdefault(key.tobytes(), []).append(j)
  for i, key in enumerate(keys_a):
    for j in where_b.get(key.tobytes(), ()):
      if not within or j > i:
        left.append(np.array([i]))
        right.append(np.array([j]))
  left = np.concatenate(left).astype(np.int64) if left else np.zeros((0,), np.int64)
  right = np.concatenate(right).astype(np.int64) if right else np.zeros((0,), np.int64)
  unique = np.unique(np.stack([left, right], axis=1), axis=0).reshape(-1, 2)
  left, right = unique[:, 0], unique[:, 1]
  exact = np.all(np.asarray(first.digest)[left] == np.asarray(second.digest)[right], axis=1)
  distance = image_hash.hamming(a[left], b[right]).astype(np.int32)
  fine_distance = image_hash.fine_hamming(fine_a[left], fine_b[right]).astype(np.int32)
  pairs = Pairs(left, right, distance, fine_distance, exact, np.zeros(len(left), np.int8),
                np.zeros((len(left), 4), np.float32), np.full(len(left), -1, np.int32))
  if crops and max_distance >= 0 and hasattr(first, 'thumbnail') and hasattr(
      second, 'thumbnail'):
    pairs = _with_crops(pairs, first, second, within)
  return pairs


def _with_crops(pairs: Pairs, first, second, within: bool) -> Pairs:
  """`pairs` and the crop pairs it lacks, sorted by (left, right); where both images are
  found a crop of the other, the closer window at 256 bits."""
  found = []
  if within:
    match = crop_match.crops_of(first.thumbnail)
    swap = match.query > match.reference  # the crop on the right of a pair i < j
    left = np.where(swap, match.reference, match.query)
    right = np.where(swap, match.query, match.reference)
    found.append((left, right, np.where(swap, RIGHT_IS_CROP, LEFT_IS_CROP), match))
  else:
    match = crop_match.crops_of(first.thumbnail, second.thumbnail)
    found.append((match.query, match.reference, np.full(len(match), LEFT_IS_CROP), match))
    match = crop_match.crops_of(second.thumbnail, first.thumbnail)
    found.append((match.reference, match.query, np.full(len(match), RIGHT_IS_CROP), match))
  left = np.concatenate([f[0] for f in found]).astype(np.int64)
  right = np.concatenate([f[1] for f in found]).astype(np.int64)
  cropped = np.concatenate([f[2] for f in found]).astype(np.int8)
  crop = np.concatenate([f[3].crop for f in found]).reshape(-1, 4)
  crop_distance = np.concatenate([f[3].fine_distance for f in found]).astype(np.int32)
  # Closest window first, then one row per pair; pairs matched whole stay as they are.
  order = np.lexsort((crop_distance, right, left))
  left, right, cropped, crop, crop_distance = (
      left[order], right[order], cropped[order], crop[order], crop_distance[order])
  first_of_pair = np.ones(len(left), bool)
  first_of_pair[1:] = (left[1:] != left[:-1]) | (right[1:] != right[:-1])
  known = {(i, j) for i, j in zip(pairs.left.tolist(), pairs.right.tolist())}
  new = first_of_pair & np.array([(i, j) not in known
                                  for i, j in zip(left.tolist(), right.tolist())], bool)
  left, right = left[new], right[new]
  added = Pairs(
      left, right,
      image_hash.hamming(np.asarray(first.phash, np.uint64)[left],
                         np.asarray(second.phash, np.uint64)[right]).astype(np.int32),
      image_hash.fine_hamming(np.asarray(first.fine, np.uint64)[left],
                              np.asarray(second.fine, np.uint64)[right]).astype(np.int32),
      np.zeros(len(left), bool), cropped[new], crop[new], crop_distance[new])
  merged = Pairs.concatenate([pairs, added])
  return merged.select(np.lexsort((merged.right, merged.left)))


def components(count: int, left, right) -> np.ndarray:
  """int64[count]: a group id per node of the graph with edges (left[p], right[p]); the id
  is the smallest node of its group, so a node without edges is its own group."""
  parent = np.arange(count)

  def root(node):
    while parent[node] != node:
      parent[node] = parent[parent[node]]
      node = parent[node]
    return node

  for i, j in zip(np.asarray(left).tolist(), np.asarray(right).tolist()):
    ri, rj = root(i), root(j)
    if ri != rj:
      parent[max(ri, rj)] = min(ri, rj)
  return np.array([root(node) for node in range(count)], np.int64)
