"""What a model is trained to do: its loss and its metrics, for the pure steps.

A task is a frozen (hashable) dataclass, closed over by the jitted steps.
"""

import dataclasses

import jax
import jax.numpy as jnp

from skinjax import losses
from skinjax import metrics as metrics_lib

SEGMENTATION_LOSSES = ('jaccard', 'dice', 'bce')
# The scalar metrics each task's EpochMetrics.compute() returns (best_metric is one).
METRICS = {
    'classification': ('loss', 'accuracy', 'balanced_accuracy', 'precision_macro',
                       'recall_macro', 'f1_macro', 'precision_weighted', 'recall_weighted',
                       'f1_weighted'),
    'segmentation': ('loss', 'dice', 'iou', 'mean_iou', 'pixel_accuracy', 'precision',
                     'recall', 'thresholded_jaccard', 'mean_image_jaccard', 'mean_image_dice'),
}


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
  """Integer labels in batch['label'], softmax cross-entropy, a confusion matrix."""

  num_classes: int
  class_weights: tuple[float, ...] | None = None
  label_smoothing: float = 0.0

  def __post_init__(self):
    if self.class_weights is not None and len(self.class_weights) != self.num_classes:
      raise ValueError(f'class_weights has {len(self.class_weights)} entries, '
                       f'expected one per class ({self.num_classes})')

  def loss(self, logits, batch):
    return losses.softmax_cross_entropy(logits, batch['label'],
                                        class_weights=self.class_weights,
                                        label_smoothing=self.label_smoothing)

  def empty_metrics(self) -> metrics_lib.EpochMetrics:
    return metrics_lib.EpochMetrics(metrics_lib.Average.empty(),
                                    metrics_lib.ClassificationCounts.empty(self.num_classes))

  def batch_metrics(self, logits, batch, per_example_loss, valid):
    return metrics_lib.EpochMetrics(
        metrics_lib.Average.from_values(per_example_loss, valid),
        metrics_lib.ClassificationCounts.from_logits(logits, batch['label'], valid))

  @staticmethod
  def outputs(logits) -> dict:
    """Per-example outputs: 'predicted' int32[B] (the class the metrics count) and
    'probabilities' float32[B, classes]."""
    return {'predicted': jnp.argmax(logits, axis=-1).astype(jnp.int32),
            'probabilities': jax.nn.softmax(logits, axis=-1)}


@dataclasses.dataclass(frozen=True)
class SegmentationTask:
  """Binary masks in batch['mask'] ({0, 1}[B, H, W, 1]), one logit per pixel."""

  loss_name: str = 'jaccard'
  smooth: float | None = None
  jaccard_form: str = 'soft'

  def __post_init__(self):
    if self.loss_name not in SEGMENTATION_LOSSES:
      raise ValueError(f'segmentation loss {self.loss_name!r} is not one of '
                       f'{SEGMENTATION_LOSSES}')

  def loss(self, logits, batch):
    masks = batch['mask']
    if self.loss_name == 'jaccard':
      return losses.jaccard_loss(logits, masks, smooth=self.smooth, form=self.jaccard_form)
    if self.loss_name == 'dice':
      return losses.dice_loss(logits, masks, smooth=1.0 if self.smooth is None else self.smooth)
    return losses.sigmoid_binary_cross_entropy(logits, masks)

  def empty_metrics(self) -> metrics_lib.EpochMetrics:
    return metrics_lib.EpochMetrics(metrics_lib.Average.empty(),
                                    metrics_lib.SegmentationCounts.empty())

  def batch_metrics(self, logits, batch, per_example_loss, valid):
    return metrics_lib.EpochMetrics(
        metrics_lib.Average.from_values(per_example_loss, valid),
        metrics_lib.SegmentationCounts.from_logits(logits, batch['mask'], valid))

  @staticmethod
  def outputs(logits) -> dict:
    """Per-example outputs: 'mask' uint8[B, H, W, 1] (logit > 0, the pixels the metrics
    count as lesion) and the lesion 'probability' float16[B, H, W, 1] (half the bytes:
    a whole split of maps is kept)."""
    return {'mask': (logits > 0).astype(jnp.uint8),
            'probability': jax.nn.sigmoid(logits).astype(jnp.float16)}
