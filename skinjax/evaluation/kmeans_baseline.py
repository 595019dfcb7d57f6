"""Paper 2's k-means colour segmentation scored on the images a segmenter is scored on, so
that the two stand side by side on the same pixels (skinjax.explain.kmeans does the
clustering; this scores it against the split's masks)."""

import jax
import numpy as np

from skinjax.explain.kmeans import segment
from skinjax.metrics import SegmentationCounts

K = 3  # paper 2's clusters
BATCH = 8  # each k-means call runs until its slowest image converges


def kmeans_scores(arrays, *, k: int = K, seed: int = 0) -> dict:
  """Pooled segmentation metrics of k-means masks against `arrays.masks` (a SplitArrays
  with masks), each batch drawn from `seed` folded with its position."""
  if arrays.masks is None:
    raise ValueError('k-means is scored against masks; these arrays have none')
  counts = SegmentationCounts.empty()
  key = jax.random.key(seed)
  for start in range(0, len(arrays), BATCH):
    images = np.asarray(arrays.images[start:start + BATCH])
    truth = np.asarray(arrays.masks[start:start + BATCH, ..., 0]) > 0
    # A short last batch is filled up with copies of its last image (their masks dropped),
    # so that one program serves every batch of a size: another batch shape is another
    # compilation (1.6 s for three 48x48 images on 2 cores), the copies cost next to nothing.
    filled = np.concatenate([images, np.repeat(images[-1:], BATCH - len(images), axis=0)])
    predicted = np.asarray(segment(filled, jax.random.fold_in(key, start), k=k))[:len(images)]
    counts = counts.merge(SegmentationCounts.from_masks(predicted, truth))
  return counts.compute()
