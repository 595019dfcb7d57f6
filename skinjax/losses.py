"""Losses. Each returns float32[B], one value per example; the caller averages.

Returning per-example values (as optax does) lets a step weight or mask examples, e.g.
the padded tail of an evaluation batch. Inputs are logits; every loss computes in float32
whatever the model's compute dtype.
"""

import jax
import jax.numpy as jnp
import optax

JACCARD_FORMS = ('soft', 'keras_contrib')


def _foreground_sums(logits, masks):
  """sigmoid(logits) and masks summed per image: (|A.B|, |A|, |B|), each float32[B]."""
  probs = jax.nn.sigmoid(logits.astype(jnp.float32))
  masks = masks.astype(jnp.float32)
  axes = tuple(range(1, probs.ndim))
  return ((probs * masks).sum(axes), probs.sum(axes), masks.sum(axes))


def jaccard_loss(logits, masks, *, smooth: float | None = None, form: str = 'soft'):
  """Soft Jaccard (IoU) distance per image, the loss paper 1 trains its U-Net with.

  With A = sigmoid(logits) and B = masks, summed over all pixels of each image:
    form='soft':           1 - (|A.B| + s) / (|A| + |B| - |A.B| + s),  s defaults to 1
    form='keras_contrib':  (1 - (|A.B| + s) / (|A| + |B| - |A.B| + s)) * s,  s defaults to 100
  The smoothing term s keeps the ratio defined for an empty mask and an empty prediction
  (loss 0 then) and softens the gradient for small lesions; the keras-contrib form scales
  the distance by s, as `keras_contrib.losses.jaccard_distance` does. (That function sums
  over the last axis only; for [B, H, W, 1] masks that is per pixel. Here both forms sum
  over each image, which is what the formula in paper 1 describes.)

  Args:
    logits: float[B, H, W, 1] (any trailing shape), pre-sigmoid.
    masks: {0, 1}[B, H, W, 1], same shape.
  Returns:
    float32[B].
  """
  if form not in JACCARD_FORMS:
    raise ValueError(f'jaccard_loss form {form!r} is not one of {JACCARD_FORMS}')
  if smooth is None:
    smooth = 1.0 if form == 'soft' else 100.0
  intersection, pred_sum, true_sum = _foreground_sums(logits, masks)
  jaccard = (intersection + smooth) / (pred_sum + true_sum - intersection + smooth)
  distance = 1.0 - jaccard
  return distance * smooth if form == 'keras_contrib' else distance


def dice_loss(logits, masks, *, smooth: float = 1.0):
  """Soft Dice loss per image: 1 - (2|A.B| + s) / (|A| + |B| + s). Returns float32[B]."""
  intersection, pred_sum, true_sum = _foreground_sums(logits, masks)
  return 1.0 - (2.0 * intersection + smooth) / (pred_sum + true_sum + smooth)


def sigmoid_binary_cross_entropy(logits, masks):
  """Pixel-wise sigmoid cross-entropy averaged over each image. Returns float32[B]."""
  losses = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32),
                                              masks.astype(jnp.float32))
  return losses.reshape((losses.shape[0], -1)).mean(axis=1)


def softmax_cross_entropy(logits, labels, *, class_weights=None, label_smoothing: float = 0.0):
  """Softmax cross-entropy with integer labels. Returns float32[B].

  Args:
    logits: float[B, C].
    labels: int[B] in [0, C).
    class_weights: optional float[C]; each example's loss is multiplied by the weight of
      its true class (Keras `class_weight`).
    label_smoothing: eps in [0, 1); the target becomes (1 - eps) * one_hot + eps / C.
  """
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f'label_smoothing must be in [0, 1), got {label_smoothing}')
  logits = logits.astype(jnp.float32)
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  losses = optax.softmax_cross_entropy(logits, targets)
  if class_weights is not None:
    losses = losses * jnp.asarray(class_weights, jnp.float32)[labels]
  return losses
