"""Metrics accumulate in jitted code and agree with scikit-learn to 1e-6."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from skinjax.metrics import (Average, ClassificationCounts, SegmentationCounts,
                             classification_metrics)

TOL = 1e-6


@jax.jit
def accumulate_classification(logits, labels, valid):
  """Three batches merged inside one jitted function, as a train loop would."""
  counts = ClassificationCounts.empty(logits.shape[-1])
  for part in range(3):
    chunk = slice(part * logits.shape[0] // 3, (part + 1) * logits.shape[0] // 3)
    counts = counts.merge(ClassificationCounts.from_logits(logits[chunk], labels[chunk],
                                                           valid[chunk]))
  return counts


@pytest.fixture(scope='module')
def classification_case():
  """600 examples, 6 classes; class 5 appears in neither labels nor predictions."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, 600)
  predictions = np.where(rng.random(600) < 0.6, labels, rng.integers(0, 5, 600))
  logits = rng.normal(size=(600, 6)).astype(np.float32)
  logits[np.arange(600), predictions] += 10.0
  valid = rng.random(600) < 0.9
  counts = accumulate_classification(jnp.asarray(logits), jnp.asarray(labels),
                                     jnp.asarray(valid))
  return counts.compute(), labels[valid], predictions[valid]


def test_confusion_matrix_counts_only_valid_examples(classification_case):
  result, y_true, y_pred = classification_case
  assert result['count'] == len(y_true)
  np.testing.assert_array_equal(result['support'], np.bincount(y_true, minlength=6))


def test_accuracy_and_balanced_accuracy_agree_with_sklearn(classification_case):
  result, y_true, y_pred = classification_case
  assert abs(result['accuracy'] - skm.accuracy_score(y_true, y_pred)) < TOL
  assert abs(result['balanced_accuracy'] - skm.balanced_accuracy_score(y_true, y_pred)) < TOL


@pytest.mark.parametrize('name,fn', [('precision', skm.precision_score),
                                     ('recall', skm.recall_score), ('f1', skm.f1_score)])
def test_per_class_macro_and_weighted_scores_agree_with_sklearn(classification_case, name, fn):
  result, y_true, y_pred = classification_case
  per_class = fn(y_true, y_pred, labels=list(range(6)), average=None, zero_division=0)
  np.testing.assert_allclose(result[f'{name}_per_class'], per_class, atol=TOL)
  for average in ('macro', 'weighted'):
    expected = fn(y_true, y_pred, average=average, zero_division=0)
    assert abs(result[f'{name}_{average}'] - expected) < TOL, average


def test_classification_metrics_of_an_empty_matrix_are_zero_not_nan():
  result = classification_metrics(np.zeros((3, 3), int))
  assert result['accuracy'] == 0.0 and result['f1_macro'] == 0.0 and result['count'] == 0


@pytest.fixture(scope='module')
def segmentation_case():
  """Eight 24x24 masks of varied density, one padded example, and the edge cases:
  image 0 has empty truth and empty prediction, image 1 empty truth only."""
  rng = np.random.default_rng(1)
  true = rng.random((9, 24, 24, 1)) < rng.uniform(0.05, 0.6, (9, 1, 1, 1))
  noise = rng.random(true.shape) < rng.uniform(0.0, 0.5, (9, 1, 1, 1))
  pred = true ^ noise
  true[0], pred[0] = False, False
  true[1] = False
  valid = np.ones(9, bool)
  valid[-1] = False  # a padded example: counts nowhere
  logits = np.where(pred, 3.0, -3.0).astype(np.float32)

  @jax.jit
  def accumulate(logits, true, valid):
    counts = SegmentationCounts.empty()
    for chunk in (slice(0, 4), slice(4, 9)):
      counts = counts.merge(SegmentationCounts.from_logits(logits[chunk], true[chunk],
                                                           valid[chunk]))
    return counts

  result = accumulate(jnp.asarray(logits), jnp.asarray(true), jnp.asarray(valid)).compute()
  return result, true[:8], pred[:8]


def test_pooled_segmentation_scores_agree_with_sklearn(segmentation_case):
  result, true, pred = segmentation_case
  t, p = true.ravel(), pred.ravel()
  assert abs(result['dice'] - skm.f1_score(t, p)) < TOL
  assert abs(result['iou'] - skm.jaccard_score(t, p)) < TOL
  assert abs(result['mean_iou'] - skm.jaccard_score(t, p, average='macro')) < TOL
  assert abs(result['pixel_accuracy'] - skm.accuracy_score(t, p)) < TOL
  assert abs(result['precision'] - skm.precision_score(t, p)) < TOL
  assert abs(result['recall'] - skm.recall_score(t, p)) < TOL
  assert result['images'] == 8


def test_per_image_scores_agree_with_sklearn_and_isic_threshold(segmentation_case):
  result, true, pred = segmentation_case
  jaccards = np.array([skm.jaccard_score(t.ravel(), p.ravel(), zero_division=1.0)
                       for t, p in zip(true, pred)])
  dices = np.array([skm.f1_score(t.ravel(), p.ravel(), zero_division=1.0)
                    for t, p in zip(true, pred)])
  assert jaccards[0] == 1.0 and jaccards[1] == 0.0  # the edge cases are in the sample
  assert 0 < (jaccards < 0.65).sum() < 8  # and the threshold bites on some images
  assert abs(result['mean_image_jaccard'] - jaccards.mean()) < TOL
  assert abs(result['mean_image_dice'] - dices.mean()) < TOL
  assert abs(result['thresholded_jaccard'] - np.where(jaccards >= 0.65, jaccards, 0).mean()) < TOL


def test_pixel_counts_stay_exact_past_int32():
  """600 merges of a 2048x2048 all-lesion image: 2.5e9 true positives > 2**31."""
  ones = jnp.ones((1, 2048, 2048, 1), bool)

  @jax.jit
  def accumulate():
    batch = SegmentationCounts.from_masks(ones, ones)
    return jax.lax.fori_loop(0, 600, lambda _, c: c.merge(batch), SegmentationCounts.empty())

  result = accumulate().compute()
  assert result['pixels']['tp'] == 600 * 2048 * 2048
  assert result['images'] == 600 and result['dice'] == 1.0


def test_average_ignores_invalid_examples():
  average = Average.from_values(jnp.array([1.0, 2.0, 100.0]), jnp.array([True, True, False]))
  assert average.merge(Average.from_values(jnp.array([3.0]))).compute() == 2.0
