"""K-means colour segmentation (paper 2, section III.D, Algorithm 1), batched and jitted.

Per image, pixels are RGB points in [0, 1]. Initialisation is greedy k-means++ as
scikit-learn does it: the first centre uniformly at random, each next one the best (lowest
total squared distance) of 2 + floor(ln k) candidates drawn with probability
proportional to D^2. Lloyd iterations then run in `lax.while_loop` until the labels stop
changing or the summed squared centre shift is at most `tol` times the mean per-channel
variance of the pixels (scikit-learn's tolerance), at most `max_iter` times; the final
labels are recomputed from the final centres, as scikit-learn does. A cluster that loses
all its pixels keeps its previous centre (scikit-learn relocates it instead).

Paper 2 clusters into k = 3 (normal skin, lesion, background) without saying which
cluster is the lesion. Our rule: the cluster with the lowest
    luminance(centre) + mean over its pixels of (distance to the image centre / half the
    image diagonal),
both terms in [0, 1], luminance = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601). The darker
and the more central a cluster, the lower its score: the dark vignette of a dermoscope at
the corners is dark but peripheral, and skin is central but light.
"""

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

LUMINANCE = (0.299, 0.587, 0.114)


class KMeansResult(NamedTuple):
  """centres float32[B, k, D], labels int32[B, N], inertia float32[B], iterations int32[B]."""

  centres: jax.Array
  labels: jax.Array
  inertia: jax.Array
  iterations: jax.Array


def _squared_distances(points, centres):
  """[N, D], [k, D] -> [N, k]."""
  # Summed over the few channels one by one: XLA:CPU vectorises this, not a size-3 reduce.
  return sum((points[:, None, d] - centres[None, :, d]) ** 2 for d in range(points.shape[1]))


def _nearest(distances):
  """argmin over the few clusters of [N, k] (first on ties), as elementwise selects."""
  best, index = distances[:, 0], jnp.zeros(distances.shape[0], jnp.int32)
  for j in range(1, distances.shape[1]):
    closer = distances[:, j] < best
    best, index = jnp.where(closer, distances[:, j], best), jnp.where(closer, j, index)
  return index, best


def _kmeans_plus_plus(points, key, k):
  n, trials = points.shape[0], 2 + int(math.log(k))
  key, first_key = jax.random.split(key)
  first = points[jax.random.randint(first_key, (), 0, n)]
  centres = jnp.zeros((k, points.shape[1]), points.dtype).at[0].set(first)
  closest = _squared_distances(points, first[None])[:, 0]
  for index in range(1, k):
    key, draw_key = jax.random.split(key)
    # Inverse-CDF draws proportional to D^2, as scikit-learn draws them.
    cumulative = jnp.cumsum(closest)
    targets = jax.random.uniform(draw_key, (trials,)) * cumulative[-1]
    candidates = jnp.minimum(jnp.searchsorted(cumulative, targets), n - 1)
    with_candidate = jnp.minimum(closest[None, :],
                                 _squared_distances(points, points[candidates]).T)
    best = jnp.argmin(with_candidate.sum(axis=1))
    centres = centres.at[index].set(points[candidates[best]])
    closest = with_candidate[best]
  return centres


def _lloyd(points, centres, max_iter, tol):
  k = centres.shape[0]
  threshold = tol * jnp.mean(jnp.var(points, axis=0))

  def assign(centres):
    return _nearest(_squared_distances(points, centres))[0]

  def step(state):
    iteration, centres, labels, _ = state
    new_labels = assign(centres)
    # Masked sums per cluster, not a scatter-add: XLA:CPU runs scatters serially.
    members = [new_labels == j for j in range(k)]
    sums = jnp.stack([jnp.where(m[:, None], points, 0.0).sum(axis=0) for m in members])
    counts = jnp.stack([m.sum(dtype=points.dtype) for m in members])
    new_centres = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None],
                            centres)
    shift = jnp.sum((new_centres - centres) ** 2)
    done = jnp.all(new_labels == labels) | (shift <= threshold)
    # Unchanged labels mean the centres did not move: keep them (scikit-learn's order).
    new_centres = jnp.where(jnp.all(new_labels == labels), centres, new_centres)
    return iteration + 1, new_centres, new_labels, done

  def keep_going(state):
    iteration, _, _, done = state
    return (iteration < max_iter) & ~done

  initial = (jnp.int32(0), centres, jnp.full(points.shape[0], -1, jnp.int32), jnp.bool_(False))
  iterations, centres, _, _ = lax.while_loop(keep_going, step, initial)
  labels, distances = _nearest(_squared_distances(points, centres))
  return centres, labels, distances.sum(), iterations


@partial(jax.jit, static_argnames=('k', 'max_iter', 'n_init'))
def kmeans(points, key, *, k: int = 3, max_iter: int = 300, tol: float = 1e-4,
           n_init: int = 1) -> KMeansResult:
  """K-means of each point set in a batch. points: float[B, N, D]; key: a PRNG key.

  n_init: k-means++ starts per point set, the lowest-inertia run kept (scikit-learn's
    n_init; its default for k-means++ is 1).
  """
  points = points.astype(jnp.float32)
  keys = jax.random.split(key, (points.shape[0], n_init))

  def one(points, key):
    return _lloyd(points, _kmeans_plus_plus(points, key, k), max_iter, tol)

  runs = KMeansResult(*jax.vmap(jax.vmap(one, in_axes=(None, 0)))(points, keys))
  best = jnp.argmin(runs.inertia, axis=1)
  return jax.tree.map(lambda x: jax.vmap(lambda x, i: x[i])(x, best), runs)


def lesion_cluster(centres, labels, height: int, width: int):
  """Index int32[B] of the lesion cluster, by the module docstring's rule.

  centres: float[B, k, 3] RGB in [0, 1]; labels: int[B, height * width] (row-major).
  """
  k = centres.shape[1]
  luminance = centres @ jnp.asarray(LUMINANCE, centres.dtype)  # [B, k]
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')
  radius = jnp.hypot(rows - (height - 1) / 2, cols - (width - 1) / 2)
  radius = (radius / jnp.hypot((height - 1) / 2, (width - 1) / 2)).reshape(-1)
  one_hot = jax.nn.one_hot(labels, k, dtype=jnp.float32)  # [B, N, k]
  counts = one_hot.sum(axis=1)
  centrality = jnp.einsum('bnk,n->bk', one_hot, radius) / jnp.maximum(counts, 1.0)
  score = jnp.where(counts > 0, luminance + centrality, jnp.inf)
  return jnp.argmin(score, axis=1).astype(jnp.int32)


@partial(jax.jit, static_argnames=('k', 'max_iter', 'n_init'))
def segment(images, key, *, k: int = 3, max_iter: int = 300, tol: float = 1e-4,
            n_init: int = 1):
  """Lesion masks bool[B, H, W] of images uint8 (or float in [0, 255]) [B, H, W, 3]."""
  batch, height, width, channels = images.shape
  points = images.reshape(batch, height * width, channels).astype(jnp.float32) / 255.0
  result = kmeans(points, key, k=k, max_iter=max_iter, tol=tol, n_init=n_init)
  lesion = lesion_cluster(result.centres, result.labels, height, width)
  return (result.labels == lesion[:, None]).reshape(batch, height, width)
