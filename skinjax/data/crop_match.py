"""Near-duplicates where one image is a crop of the other (up to MAX_CROP of each side).

The full-frame hashes of image_hash describe the whole frame: a crop of 5% per side moves
them past their thresholds. Here the larger image's 64x64 grey thumbnail (which it keeps
as its fingerprint) is cut into windows on a grid of crop fractions (left, right, top,
bottom each a multiple of STEP up to MAX_CROP, asymmetric allowed; a 4:3 frame squashed to
a square keeps its fractions), and each window is hashed as image_hash.phash hashes a frame:
resampled to 32x32, the 8x8 lowest DCT-II frequencies, bits above their median. Cutting,
resampling and the DCT are linear, so a window's low frequencies are
Lv @ thumbnail @ Lh.T with a small matrix per vertical and per horizontal crop: batched
products, no image decoded again.

A query image q is a crop of a reference r when
1. q's whole-frame hash is within CANDIDATE_BITS of one of r's COARSE windows (every 4th
   grid step per side, 81 windows; every ordered pair, in chunks),
2. and q's 8x8 frequencies (the hash's, before the median) correlate by at least
   WINDOW_CORRELATION with those of one of r's MEDIUM windows (every 2nd step, 1,296
   windows; candidates only: this leaves about 2% of them on real dermoscopy),
3. and, with the crop refined around that window on the full grid (the best correlation
   of 16x16 low frequencies), the 256-bit hash of r's window (as image_hash.fine_hash)
   is within CONFIRM_BITS of q's: the 64-bit level alone pairs unrelated dermoscopy
   images (a dark lesion central on pale skin), the 256-bit level does not.
Thresholds and their measured precision and recall: datasets/README.md, "Copies".
"""

import dataclasses
import functools

import numpy as np

from skinjax.data import image_hash

STEP = 0.0125  # of the frame, per side
STEPS = 10  # MAX_CROP = STEPS * STEP
MAX_CROP = STEPS * STEP
COARSE = 4  # grid steps between coarse windows (0, 5, 10% per side)
MEDIUM = 2  # (0, 2.5, ..., 12.5%)
REFINE = 2  # grid steps searched on each side of the medium window, per side
CANDIDATE_BITS = 10
WINDOW_CORRELATION = 0.98
CONFIRM_BITS = 24
SIDE = 4 * image_hash.FINE_HASH_SIZE  # the thumbnails' side, 64
# Ordered pairs compared at once in step 1: 256 x 12,000 distances are 3 MB.
QUERY_CHUNK = 256
REFERENCE_CHUNK = 32  # their medium windows' frequencies: 11 MB
REFINE_CHUNK = 256  # the refinement's windows of 256 candidates: 26 MB


def _resample(lo: float, hi: float, size_out: int) -> np.ndarray:
  """float64[size_out, SIDE]: the rows [lo, 1 - hi) of SIDE samples, resampled to size_out
  with a triangle filter as wide as a step (antialiased, like PIL's bilinear)."""
  start, stop = lo * SIDE, (1 - hi) * SIDE
  scale = (stop - start) / size_out
  centres = start + (np.arange(size_out) + 0.5) * scale
  weights = np.maximum(0, 1 - np.abs(np.arange(SIDE)[None] + 0.5 - centres[:, None]) /
                       max(scale, 1.0))
  return weights / weights.sum(axis=1, keepdims=True)


def _dct(size_low: int, size: int) -> np.ndarray:
  """float64[size_low, size]: the first rows of scipy.fftpack.dct's (type II) matrix."""
  k, n = np.arange(size_low)[:, None], np.arange(size)[None]
  return 2 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))


def axis_crops(every: int = 1) -> np.ndarray:
  """int[C, 2]: (first, last) side crops in grid steps, each a multiple of `every`."""
  steps = np.arange(0, STEPS + 1, every)
  return np.stack(np.meshgrid(steps, steps, indexing='ij'), -1).reshape(-1, 2)


@functools.cache
def _maps(size_low: int) -> np.ndarray:
  """float32[(STEPS + 1)**2, size_low, SIDE]: per axis crop (index first * (STEPS + 1) +
  last), the thumbnail's low frequencies along that axis: image_hash's 8x8 from a 32-sample
  window (size_low 8), or the 256-bit hash's 16x16 from 64 (size_low 16)."""
  size = 4 * size_low
  dct = _dct(size_low, size)
  return np.stack([dct @ _resample(lo * STEP, hi * STEP, size)
                   for lo, hi in axis_crops()]).astype(np.float32)


def _index(crops: np.ndarray) -> np.ndarray:
  return crops[..., 0] * (STEPS + 1) + crops[..., 1]


def _above_median(low: np.ndarray) -> np.ndarray:
  return low > np.median(low, axis=-1, keepdims=True)


def _window_low(thumbnails: np.ndarray, every: int) -> np.ndarray:
  """float32[B, C * C, 64]: the 8x8 low frequencies of each window of uint8[B, 64, 64]
  thumbnails, rows cropped by axis_crops(every)[v] and columns by axis_crops(every)[h],
  window v * C + h."""
  size = image_hash.HASH_SIZE
  maps = _maps(size)[_index(axis_crops(every))].reshape(-1, SIDE)  # [C * 8, 64]
  count = len(maps) // size
  low = (np.matmul(maps, thumbnails.astype(np.float32)).reshape(-1, SIDE) @ maps.T)
  return low.reshape(len(thumbnails), count, size, count, size).transpose(
      0, 1, 3, 2, 4).reshape(len(thumbnails), count * count, size * size)


def window_hashes(thumbnails: np.ndarray, every: int, chunk: int = 128) -> np.ndarray:
  """uint64[B, C * C]: the 64-bit hash of each window of _window_low."""
  hashes = [np.zeros((0, (STEPS // every + 1) ** 4), np.uint64)]
  for start in range(0, len(thumbnails), chunk):  # a chunk's frequencies: 42 MB at C = 36
    low = _window_low(thumbnails[start:start + chunk], every)
    hashes.append(image_hash.pack(_above_median(low.reshape(-1, low.shape[-1]))).reshape(
        len(low), -1))
  return np.concatenate(hashes)


def _fine_low(thumbnails: np.ndarray, vertical: np.ndarray, horizontal: np.ndarray
              ) -> np.ndarray:
  """float32[P, N, 256]: 16x16 low frequencies of the windows of uint8[P, 64, 64]
  thumbnails, window n of thumbnail p cropped by axis crops (indices) vertical[p, n] and
  horizontal[p, n]."""
  maps = _maps(image_hash.FINE_HASH_SIZE)
  rows = np.matmul(maps[vertical], thumbnails[:, None].astype(np.float32))  # [P, N, 16, 64]
  return np.matmul(rows, maps[horizontal].transpose(0, 1, 3, 2)).reshape(
      *vertical.shape, -1)


def _correlation(windows: np.ndarray, query: np.ndarray) -> np.ndarray:
  """float32[P, N]: correlation of each window's frequencies but the first (the mean) with
  the query's; windows float32[P, N, F], query float32[P, F]."""
  windows = windows[..., 1:] - windows[..., 1:].mean(axis=-1, keepdims=True)
  query = query[:, None, 1:] - query[:, None, 1:].mean(axis=-1, keepdims=True)
  return (windows * query).sum(-1) / np.sqrt((windows ** 2).sum(-1) * (query ** 2).sum(-1)
                                             + 1e-12)


def _normalised(low: np.ndarray) -> np.ndarray:
  """Frequencies but the first (the mean), centred and scaled to unit norm: dot products
  of two are their correlation."""
  low = low[..., 1:] - low[..., 1:].mean(axis=-1, keepdims=True)
  return low / np.sqrt((low ** 2).sum(-1, keepdims=True) + 1e-12)


def _neighbours(crop: np.ndarray) -> np.ndarray:
  """int[P, (2 * REFINE + 1)**2, 2]: axis crops within REFINE steps of crop int[P, 2]."""
  offsets = np.arange(-REFINE, REFINE + 1)
  near = np.stack(np.meshgrid(offsets, offsets, indexing='ij'), -1).reshape(-1, 2)
  return np.clip(crop[:, None] + near[None], 0, STEPS)


def _refine(reference: np.ndarray, query_low: np.ndarray, vertical: np.ndarray,
            horizontal: np.ndarray, rounds: int = 2):
  """The axis crops (int[P, 2] each, in steps) near the given ones whose window of the
  reference thumbnails best correlates with the queries' 16x16 frequencies: one axis at a
  time (the rows' crop, then the columns'), `rounds` times."""
  for _ in range(rounds):
    near = _neighbours(vertical)
    columns = np.broadcast_to(_index(horizontal)[:, None], near.shape[:2])
    score = _correlation(_fine_low(reference, _index(near), columns), query_low)
    vertical = near[np.arange(len(near)), score.argmax(1)]
    near = _neighbours(horizontal)
    rows = np.broadcast_to(_index(vertical)[:, None], near.shape[:2])
    score = _correlation(_fine_low(reference, rows, _index(near)), query_low)
    horizontal = near[np.arange(len(near)), score.argmax(1)]
  return vertical, horizontal


@dataclasses.dataclass
class CropPairs:
  """query[p] is a crop of reference[p]: the window crop[p] of it."""

  query: np.ndarray  # int64[P]
  reference: np.ndarray  # int64[P]
  crop: np.ndarray  # float32[P, 4], (left, top, right, bottom) fractions of the reference
  correlation: np.ndarray  # float32[P], of 8x8 frequencies at the best medium window
  fine_distance: np.ndarray  # int32[P], 256-bit bits differing from the refined window

  def __len__(self):
    return len(self.query)


def _candidates(query_hash: np.ndarray, coarse: np.ndarray, same: bool):
  """(query, reference) index pairs within CANDIDATE_BITS of a coarse window (step 1)."""
  queries, references = [], []
  for start in range(0, len(query_hash), QUERY_CHUNK):
    q = query_hash[start:start + QUERY_CHUNK, None]
    best = np.full((len(q), len(coarse)), 255, np.uint8)
    for window in range(coarse.shape[1]):
      np.minimum(best, np.bitwise_count(np.bitwise_xor(q, coarse[None, :, window])), out=best)
    if same:  # an image is not its own crop
      best[np.arange(len(q)), np.arange(start, start + len(q))] = 255
    rows, cols = np.nonzero(best <= CANDIDATE_BITS)
    queries.append(rows + start)
    references.append(cols)
  return np.concatenate(queries), np.concatenate(references)


def _confirm(query_thumbnails, reference_thumbnails, vertical, horizontal, query,
             reference, correlation) -> CropPairs:
  """Step 3 on candidates: refine each crop, keep those within CONFIRM_BITS at 256 bits."""
  full = np.zeros((len(query), 1), np.int64)
  query_low = _fine_low(query_thumbnails, full, full)[:, 0]
  vertical, horizontal = _refine(reference_thumbnails, query_low, vertical, horizontal)
  window = _fine_low(reference_thumbnails, _index(vertical)[:, None],
                     _index(horizontal)[:, None])[:, 0]
  fine = (_above_median(window) != _above_median(query_low)).sum(1)
  keep = fine <= CONFIRM_BITS
  crop = np.stack([horizontal[:, 0], vertical[:, 0], horizontal[:, 1], vertical[:, 1]],
                  1) * STEP
  return CropPairs(query[keep], reference[keep], crop[keep].astype(np.float32),
                   correlation[keep], fine[keep].astype(np.int32))


def _best_medium_windows(queries, references, query, reference):
  """Step 2: for each candidate (query[p], reference[p], sorted by reference), the medium
  window of the reference whose 8x8 frequencies best correlate with the query's whole
  frame, and that correlation."""
  query_low = _normalised(_window_low(queries, STEPS + 1)[:, 0])  # [N, 63]
  best = np.zeros(len(query), np.int64)
  score = np.zeros(len(query), np.float32)
  starts = np.flatnonzero(np.diff(reference, prepend=-1))
  bounds = np.append(starts, len(reference))
  for first in range(0, len(starts), REFERENCE_CHUNK):
    chunk = slice(first, first + REFERENCE_CHUNK)
    windows = _normalised(_window_low(references[reference[starts[chunk]]], MEDIUM))
    for k, (lo, hi) in enumerate(zip(bounds[chunk], bounds[first + 1:][:len(windows)])):
      scores = windows[k] @ query_low[query[lo:hi]].T  # [1296, n]
      best[lo:hi] = scores.argmax(0)
      score[lo:hi] = scores.max(0)
  return best, score


def crops_of(queries: np.ndarray, references: np.ndarray | None = None) -> CropPairs:
  """Pairs where a query thumbnail is a crop of a reference one (uint8[N, 64, 64] each).

  With one set, every ordered pair of distinct images of it. Time grows with the number of
  ordered pairs (step 1) and of candidates; memory is bounded by the chunks.
  """
  same = references is None
  references = queries if same else references
  empty = CropPairs(*(np.zeros((0,), np.int64),) * 2, np.zeros((0, 4), np.float32),
                    np.zeros((0,), np.float32), np.zeros((0,), np.int32))
  if not len(queries) or not len(references):
    return empty
  query_hash = window_hashes(queries, STEPS + 1)[:, 0]  # the whole frame
  query, reference = _candidates(query_hash, window_hashes(references, COARSE), same)
  order = np.argsort(reference, kind='stable')
  query, reference = query[order], reference[order]
  best, score = _best_medium_windows(queries, references, query, reference)
  keep = score >= WINDOW_CORRELATION
  query, reference, best, score = query[keep], reference[keep], best[keep], score[keep]
  medium = axis_crops(MEDIUM)
  vertical, horizontal = medium[best // len(medium)], medium[best % len(medium)]
  found = [empty]
  for start in range(0, len(query), REFINE_CHUNK):
    part = slice(start, start + REFINE_CHUNK)
    found.append(_confirm(queries[query[part]], references[reference[part]], vertical[part],
                          horizontal[part], query[part], reference[part], score[part]))
  return CropPairs(*(np.concatenate([getattr(part, f.name) for part in found])
                     for f in dataclasses.fields(CropPairs)))
