"""Paper 2's k-means scored beside a segmenter, on the same images: pooled over the split
against its masks, in the evaluation's report."""

import json

import numpy as np
import pytest

from skinjax.data.arrays import SplitArrays
from skinjax.evaluation.evaluate import evaluate_workdir
from skinjax.evaluation.kmeans_baseline import BATCH, kmeans_scores
from skinjax.explain.kmeans import segment
from skinjax.train.spec import ConfigError


def dark_discs(count=10, size=48):
  """Light skin with one dark disc each, its mask exact."""
  rng = np.random.default_rng(0)
  rows, cols = np.mgrid[:size, :size]
  images, masks = [], []
  for _ in range(count):
    centre = rng.uniform(0.35, 0.65, 2) * size
    mask = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < (size / 5) ** 2
    image = np.where(mask[..., None], [90, 50, 40], [220, 180, 160]).astype(np.float64)
    images.append(np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8))
    masks.append(mask[..., None].astype(np.uint8))
  return SplitArrays(np.stack(images), np.zeros(count, np.int32),
                     np.array([str(i) for i in range(count)]), np.stack(masks))


def test_kmeans_finds_dark_lesions_and_is_scored_against_the_masks():
  arrays = dark_discs()
  scores = kmeans_scores(arrays)
  assert scores['dice'] > 0.9 and scores['images'] == len(arrays)
  empty = dark_discs(count=3)
  empty.masks[:] = 0
  assert kmeans_scores(empty)['precision'] == 0.0  # every marked pixel is wrong


def test_a_segmenters_report_carries_kmeans_on_the_same_images(segmenter_run):
  workdir, metrics = segmenter_run
  evaluation = evaluate_workdir(str(workdir), split='test', kmeans=True)
  report = json.loads((workdir / 'report' / 'test' / 'report.json').read_text())
  assert report['kmeans']['k'] == 3
  assert report['kmeans']['metrics']['images'] == report['examples']
  assert report['metrics']['dice'] == pytest.approx(metrics['dice'])  # the U-Net's own
  assert evaluation.target.kmeans == report['kmeans']


def test_kmeans_is_refused_beside_a_classifier(classifier_run):
  with pytest.raises(ConfigError, match=r'^--kmeans: scores k-means beside a segmenter'):
    evaluate_workdir(str(classifier_run[0]), split='test', kmeans=True)


def test_a_short_last_batch_reuses_the_program_and_scores_only_its_own_images():
  arrays = dark_discs(count=BATCH + 3, size=24)  # a size no other test here segments
  before = segment._cache_size()
  scores = kmeans_scores(arrays)
  # One program for the full and the short batch (two before the fill); none new where an
  # earlier test in this process already segmented full batches of this size.
  assert segment._cache_size() - before <= 1
  assert scores['images'] == BATCH + 3
  assert sum(scores['pixels'].values()) == (BATCH + 3) * 24 * 24
  assert scores['dice'] > 0.9
