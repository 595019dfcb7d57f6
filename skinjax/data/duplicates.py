"""Copies among images: exact and near-duplicate pairs from fingerprints, and their groups.

A pair is an exact duplicate when the two images decode to equal pixels (equal
`image_hash.pixel_digest`), and a near-duplicate when their 64-bit perceptual hashes differ
in at most `max_distance` bits (default image_hash.NEAR_DUPLICATE_BITS) and their 256-bit
hashes in at most `confirm_distance` (default image_hash.CONFIRM_BITS). Groups are the
connected components of the pairs: copies of copies are one group.
"""

import dataclasses

import numpy as np

from skinjax.data import image_hash

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

  def __len__(self):
    return len(self.left)

  def select(self, keep) -> 'Pairs':
    return Pairs(self.left[keep], self.right[keep], self.distance[keep],
                 self.fine_distance[keep], self.exact[keep])


def _digest_keys(digest: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(digest, np.uint8).view(f'V{digest.shape[1]}').ravel()


def find_pairs(first, second=None, *, max_distance: int | None = None,
               confirm_distance: int | None = None) -> Pairs:
  """Exact and near-duplicate pairs, sorted by (left, right).

  first, second: anything with `.digest` (uint8[N, 32]), `.phash` (uint64[N]) and `.fine`
    (uint64[N, 4]), e.g. skinjax.data.split_fingerprints.Fingerprints. With one set, pairs
    are i < j within it; with two, every (i in first, j in second).
  max_distance: the 64-bit threshold in bits (default NEAR_DUPLICATE_BITS); negative:
    exact duplicates only. confirm_distance: the 256-bit threshold (default CONFIRM_BITS).
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
  return Pairs(left, right, distance, fine_distance, exact)


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
