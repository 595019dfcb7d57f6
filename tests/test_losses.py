"""Losses: values worked out by hand, float32 outputs, finite gradients at the edges."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax import losses


def logit(p):
  return math.log(p / (1 - p))


# One 2x2 image: probabilities 0.8, 0.2, 0.6, 0.1 against the mask 1, 0, 1, 0.
# |A.B| = 0.8 + 0.6 = 1.4, |A| = 1.7, |B| = 2, |A|+|B|-|A.B| = 2.3.
PROBS = [0.8, 0.2, 0.6, 0.1]
LOGITS = jnp.array([logit(p) for p in PROBS]).reshape(1, 2, 2, 1)
MASK = jnp.array([1.0, 0.0, 1.0, 0.0]).reshape(1, 2, 2, 1)


def test_soft_jaccard_distance_known_value():
  loss = losses.jaccard_loss(LOGITS, MASK)  # smooth 1
  np.testing.assert_allclose(loss, [1 - 2.4 / 3.3], rtol=1e-6)


def test_soft_jaccard_without_smoothing_is_one_minus_iou():
  np.testing.assert_allclose(losses.jaccard_loss(LOGITS, MASK, smooth=0.0), [1 - 1.4 / 2.3],
                             rtol=1e-6)


def test_keras_contrib_jaccard_distance_scales_by_smooth_100():
  loss = losses.jaccard_loss(LOGITS, MASK, form='keras_contrib')
  np.testing.assert_allclose(loss, [(1 - 101.4 / 102.3) * 100], rtol=1e-5)


def test_dice_loss_known_value():
  np.testing.assert_allclose(losses.dice_loss(LOGITS, MASK), [1 - 3.8 / 4.7], rtol=1e-6)


def test_sigmoid_bce_known_value():
  expected = -(math.log(0.8) + math.log(0.8) + math.log(0.6) + math.log(0.9)) / 4
  np.testing.assert_allclose(losses.sigmoid_binary_cross_entropy(LOGITS, MASK), [expected],
                             rtol=1e-6)


@pytest.mark.parametrize('loss_fn', [losses.jaccard_loss, losses.dice_loss])
def test_empty_mask_and_empty_prediction_cost_nothing(loss_fn):
  logits = jnp.full((2, 8, 8, 1), -30.0)
  np.testing.assert_allclose(loss_fn(logits, jnp.zeros((2, 8, 8, 1))), [0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize('loss_fn', [
    losses.jaccard_loss, losses.dice_loss, losses.sigmoid_binary_cross_entropy,
    lambda x, y: losses.jaccard_loss(x, y, form='keras_contrib')])
@pytest.mark.parametrize('mask_value', [0.0, 1.0])
@pytest.mark.parametrize('logit_value', [-100.0, 0.0, 100.0])
def test_segmentation_loss_gradients_are_finite_for_empty_and_full_masks(loss_fn, mask_value,
                                                                         logit_value):
  masks = jnp.full((2, 4, 4, 1), mask_value)
  grads = jax.grad(lambda x: loss_fn(x, masks).mean())(jnp.full((2, 4, 4, 1), logit_value))
  assert bool(jnp.all(jnp.isfinite(grads)))


def test_jaccard_rejects_an_unknown_form():
  with pytest.raises(ValueError, match="form 'hard'"):
    losses.jaccard_loss(LOGITS, MASK, form='hard')


# softmax([0, ln 2, 0]) = [0.25, 0.5, 0.25].
CLASS_LOGITS = jnp.array([[0.0, math.log(2.0), 0.0]])


def test_softmax_cross_entropy_known_value():
  loss = losses.softmax_cross_entropy(CLASS_LOGITS, jnp.array([1]))
  np.testing.assert_allclose(loss, [math.log(2.0)], rtol=1e-6)


def test_class_weights_scale_each_example_by_its_true_class_weight():
  logits = jnp.concatenate([CLASS_LOGITS, CLASS_LOGITS])
  loss = losses.softmax_cross_entropy(logits, jnp.array([1, 0]), class_weights=[1.0, 3.0, 1.0])
  np.testing.assert_allclose(loss, [3 * math.log(2.0), math.log(4.0)], rtol=1e-6)
  loss = losses.softmax_cross_entropy(logits, jnp.array([1, 0]), class_weights=[2.0, 1.0, 1.0])
  np.testing.assert_allclose(loss, [math.log(2.0), 2 * math.log(4.0)], rtol=1e-6)


def test_label_smoothing_spreads_eps_over_the_classes():
  # eps 0.3 over 3 classes: targets [0.1, 0.8, 0.1].
  loss = losses.softmax_cross_entropy(CLASS_LOGITS, jnp.array([1]), label_smoothing=0.3)
  expected = 0.2 * math.log(4.0) + 0.8 * math.log(2.0)
  np.testing.assert_allclose(loss, [expected], rtol=1e-6)


def test_losses_compute_in_float32_from_bfloat16_logits():
  assert losses.softmax_cross_entropy(CLASS_LOGITS.astype(jnp.bfloat16),
                                      jnp.array([1])).dtype == jnp.float32
  assert losses.jaccard_loss(LOGITS.astype(jnp.bfloat16), MASK).dtype == jnp.float32


def test_cross_entropy_gradient_is_finite_for_extreme_logits():
  grads = jax.grad(lambda x: losses.softmax_cross_entropy(x, jnp.array([0, 2]),
                                                          label_smoothing=0.1).mean())(
      jnp.array([[1e4, -1e4, 0.0], [-1e4, 0.0, 1e4]]))
  assert bool(jnp.all(jnp.isfinite(grads)))
