"""Metrics that accumulate on device inside jitted code and are read once per epoch.

Each accumulator is a pytree: `from_*` builds one from a batch (inside the step), `merge`
adds two (inside the step, or after a `psum` across devices), `compute` turns the totals
into Python floats on the host. Examples with `valid == False` (the padded tail of an
evaluation batch) count nowhere.

Conventions, chosen to match scikit-learn and Keras:
- Classification: a class absent from both labels and predictions is left out of macro
  averages, as scikit-learn does without `labels=`; a 0/0 precision, recall or F1 is 0.
- Segmentation: Dice, IoU, precision, recall and pixel accuracy pool pixel counts over the
  whole split (as Keras' stateful metrics do); `mean_iou` averages the IoU of background
  and lesion (Keras `MeanIoU(num_classes=2)`); `thresholded_jaccard` is ISIC 2018's score:
  the mean over images of the per-image Jaccard index, counted as 0 below 0.65. An image
  with an empty mask and an empty prediction has Jaccard and Dice 1.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

ISIC_JACCARD_THRESHOLD = 0.65
# Pixel counts can pass 2**31 in one epoch (10,015 HAM10000 masks at 600x450 hold 2.7e9
# pixels); each count is kept as two int32 words, value = high * 2**LOW_BITS + low.
LOW_BITS = 20


def _valid_or_all(valid, batch_size):
  return jnp.ones((batch_size,), bool) if valid is None else valid.astype(bool)


def _add_wide(a, b):
  """Adds two wide counters int32[..., 2] (high, low) and carries the low word."""
  low = a[..., 1] + b[..., 1]
  high = a[..., 0] + b[..., 0] + (low >> LOW_BITS)
  return jnp.stack([high, low & ((1 << LOW_BITS) - 1)], axis=-1)


def _to_wide(counts):
  """int32[...] (each below 2**31) -> wide counters int32[..., 2]."""
  counts = counts.astype(jnp.int32)
  return jnp.stack([counts >> LOW_BITS, counts & ((1 << LOW_BITS) - 1)], axis=-1)


def _from_wide(wide) -> np.ndarray:
  wide = np.asarray(wide).astype(np.int64)
  return wide[..., 0] * (1 << LOW_BITS) + wide[..., 1]


def _safe_divide(numerator, denominator, *, empty=0.0):
  numerator = np.asarray(numerator, np.float64)
  denominator = np.asarray(denominator, np.float64)
  safe = np.where(denominator == 0, 1.0, denominator)
  return np.where(denominator == 0, empty, numerator / safe)


@flax.struct.dataclass
class Average:
  """Mean of per-example values (e.g. the loss) over valid examples."""

  total: jax.Array  # float32[]
  count: jax.Array  # int32[]

  @classmethod
  def empty(cls):
    return cls(total=jnp.zeros((), jnp.float32), count=jnp.zeros((), jnp.int32))

  @classmethod
  def from_values(cls, values, valid=None):
    """values: float[B]; valid: bool[B] or None."""
    valid = _valid_or_all(valid, values.shape[0])
    return cls(total=jnp.where(valid, values.astype(jnp.float32), 0.0).sum(),
               count=valid.sum(dtype=jnp.int32))

  def merge(self, other):
    return type(self)(total=self.total + other.total, count=self.count + other.count)

  def compute(self) -> float:
    return float(_safe_divide(self.total, self.count, empty=np.nan))


@flax.struct.dataclass
class ClassificationCounts:
  """A confusion matrix int32[C, C]: rows are true classes, columns predictions."""

  confusion: jax.Array

  @classmethod
  def empty(cls, num_classes: int):
    return cls(confusion=jnp.zeros((num_classes, num_classes), jnp.int32))

  @classmethod
  def from_logits(cls, logits, labels, valid=None):
    """logits: float[B, C]; labels: int[B]; valid: bool[B] or None."""
    num_classes = logits.shape[-1]
    valid = _valid_or_all(valid, labels.shape[0])
    predictions = jnp.argmax(logits, axis=-1)
    confusion = jnp.zeros((num_classes, num_classes), jnp.int32)
    confusion = confusion.at[labels, predictions].add(valid.astype(jnp.int32))
    return cls(confusion=confusion)

  def merge(self, other):
    return type(self)(confusion=self.confusion + other.confusion)

  def compute(self) -> dict:
    return classification_metrics(np.asarray(self.confusion))


def classification_metrics(confusion: np.ndarray) -> dict:
  """Accuracy, balanced accuracy, per-class, macro and weighted precision/recall/F1.

  confusion: int[C, C], rows true classes, columns predictions. Per-class values are lists
  indexed by class; `support` counts true examples per class.
  """
  confusion = np.asarray(confusion, np.float64)
  true_positives = np.diag(confusion)
  support = confusion.sum(axis=1)
  predicted = confusion.sum(axis=0)
  precision = _safe_divide(true_positives, predicted)
  recall = _safe_divide(true_positives, support)
  f1 = _safe_divide(2 * true_positives, support + predicted)
  seen = (support + predicted) > 0
  total = support.sum()

  def macro(values):
    return float(values[seen].mean()) if seen.any() else 0.0

  def weighted(values):
    return float(_safe_divide((values * support).sum(), total))

  return {
      'accuracy': float(_safe_divide(true_positives.sum(), total)),
      'balanced_accuracy': float(recall[support > 0].mean()) if total else 0.0,
      'precision_macro': macro(precision),
      'recall_macro': macro(recall),
      'f1_macro': macro(f1),
      'precision_weighted': weighted(precision),
      'recall_weighted': weighted(recall),
      'f1_weighted': weighted(f1),
      'precision_per_class': precision.tolist(),
      'recall_per_class': recall.tolist(),
      'f1_per_class': f1.tolist(),
      'support': support.astype(np.int64).tolist(),
      'count': int(total),
  }


def pixel_counts_per_image(predicted_masks, true_masks):
  """int32[B, 4]: TP, FP, FN, TN per image for {0, 1} masks of shape [B, ...]."""
  predicted = predicted_masks.reshape((predicted_masks.shape[0], -1)).astype(bool)
  true = true_masks.reshape((true_masks.shape[0], -1)).astype(bool)
  tp = (predicted & true).sum(axis=1, dtype=jnp.int32)
  fp = (predicted & ~true).sum(axis=1, dtype=jnp.int32)
  fn = (~predicted & true).sum(axis=1, dtype=jnp.int32)
  tn = (~predicted & ~true).sum(axis=1, dtype=jnp.int32)
  return jnp.stack([tp, fp, fn, tn], axis=1)


@flax.struct.dataclass
class SegmentationCounts:
  """Pooled pixel counts plus sums of per-image scores, for binary lesion masks."""

  pixels: jax.Array  # int32[4, 2]: TP, FP, FN, TN as wide counters
  images: jax.Array  # int32[]
  jaccard_sum: jax.Array  # float32[]: sum over images of the Jaccard index
  thresholded_jaccard_sum: jax.Array  # float32[]
  dice_sum: jax.Array  # float32[]

  @classmethod
  def empty(cls):
    def zero():  # a buffer of its own per field, so each can be donated
      return jnp.zeros((), jnp.float32)
    return cls(pixels=jnp.zeros((4, 2), jnp.int32), images=jnp.zeros((), jnp.int32),
               jaccard_sum=zero(), thresholded_jaccard_sum=zero(), dice_sum=zero())

  @classmethod
  def from_logits(cls, logits, masks, valid=None):
    """logits: float[B, H, W, 1] (pixel is lesion where sigmoid > 0.5, i.e. logit > 0)."""
    return cls.from_masks(logits > 0, masks, valid)

  @classmethod
  def from_masks(cls, predicted_masks, true_masks, valid=None):
    """predicted_masks, true_masks: {0, 1}[B, ...]; valid: bool[B] or None."""
    valid = _valid_or_all(valid, true_masks.shape[0])
    counts = pixel_counts_per_image(predicted_masks, true_masks)
    counts = jnp.where(valid[:, None], counts, 0)
    tp, fp, fn = (counts[:, i].astype(jnp.float32) for i in range(3))
    union = tp + fp + fn
    jaccard = jnp.where(union > 0, tp / jnp.maximum(union, 1.0), 1.0)
    dice = jnp.where(union > 0, 2 * tp / jnp.maximum(union + tp, 1.0), 1.0)
    thresholded = jnp.where(jaccard >= ISIC_JACCARD_THRESHOLD, jaccard, 0.0)

    def total(values):
      return jnp.where(valid, values, 0.0).sum()

    return cls(pixels=_to_wide(counts.sum(axis=0)), images=valid.sum(dtype=jnp.int32),
               jaccard_sum=total(jaccard), thresholded_jaccard_sum=total(thresholded),
               dice_sum=total(dice))

  def merge(self, other):
    return type(self)(
        pixels=_add_wide(self.pixels, other.pixels),
        images=self.images + other.images,
        jaccard_sum=self.jaccard_sum + other.jaccard_sum,
        thresholded_jaccard_sum=self.thresholded_jaccard_sum + other.thresholded_jaccard_sum,
        dice_sum=self.dice_sum + other.dice_sum)

  def compute(self) -> dict:
    tp, fp, fn, tn = _from_wide(self.pixels).tolist()
    images = int(self.images)
    # Keras MeanIoU averages over the classes whose union is not empty.
    unions = np.array([tp + fp + fn, tn + fn + fp], np.float64)
    ious = _safe_divide(np.array([tp, tn], np.float64), unions)
    return {
        'dice': float(_safe_divide(2 * tp, 2 * tp + fp + fn, empty=1.0)),
        'iou': float(_safe_divide(tp, tp + fp + fn, empty=1.0)),
        'mean_iou': float(ious[unions > 0].mean()) if unions.any() else 1.0,
        'pixel_accuracy': float(_safe_divide(tp + tn, tp + fp + fn + tn)),
        'precision': float(_safe_divide(tp, tp + fp)),
        'recall': float(_safe_divide(tp, tp + fn)),
        'thresholded_jaccard': float(_safe_divide(self.thresholded_jaccard_sum, images)),
        'mean_image_jaccard': float(_safe_divide(self.jaccard_sum, images)),
        'mean_image_dice': float(_safe_divide(self.dice_sum, images)),
        'images': images,
        'pixels': {'tp': tp, 'fp': fp, 'fn': fn, 'tn': tn},
    }


@flax.struct.dataclass
class EpochMetrics:
  """What a train or eval step accumulates: the mean loss and the task's counts."""

  loss: Average
  counts: ClassificationCounts | SegmentationCounts

  def merge(self, other):
    return type(self)(loss=self.loss.merge(other.loss), counts=self.counts.merge(other.counts))

  def compute(self) -> dict:
    return {'loss': self.loss.compute(), **self.counts.compute()}
