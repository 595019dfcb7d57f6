"""Grad-CAM: it finds the region that drives the class, equals eqs. 6-8, and batches."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax.explain.gradcam import gradcam
from skinjax.models.gradcam_map import mark_gradcam_map
from skinjax.models import create_model
from skinjax.train.state import init_variables


class RedDetector(nn.Module):
  """Class 0's logit is the mean 'redness' (R - (G + B) / 2) of the image; class 1 its negative."""

  @nn.compact
  def __call__(self, images, *, train=False):
    del train
    redness = jnp.array([1.0, -0.5, -0.5])[:, None] * jnp.array([[1.0, 0.2]])  # [3, 2]
    kernel = jnp.tile(redness[None, None] / 4, (2, 2, 1, 1))  # 2x2 stride-2 average
    x = nn.relu(jax.lax.conv_general_dilated(images, kernel, (2, 2), 'VALID',
                                             dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
    x = mark_gradcam_map(self, x)  # [B, 16, 16, 2]
    return x.mean(axis=(1, 2)) @ jnp.array([[1.0, -1.0], [0.0, 0.0]])


def red_square_images():
  images = np.full((2, 32, 32, 3), 0.5, np.float32)
  images[0, 8:16, 20:28] = (1.0, 0.1, 0.1)  # top right
  images[1, 18:30, 2:10] = (0.9, 0.2, 0.1)  # bottom left
  return jnp.asarray(images)


def test_the_heatmap_peaks_on_the_region_that_drives_the_class():
  images = red_square_images()
  heatmaps, logits = gradcam(RedDetector(), {}, images, jnp.array([0, 0]))
  assert heatmaps.shape == (2, 32, 32) and float(heatmaps.max()) == pytest.approx(1.0)
  for heatmap, (rows, cols) in zip(np.asarray(heatmaps), [(slice(8, 16), slice(20, 28)),
                                                          (slice(18, 30), slice(2, 10))]):
    row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
    assert rows.start <= row < rows.stop and cols.start <= col < cols.stop
    outside = heatmap.copy()
    outside[rows.start - 1:rows.stop + 1, cols.start - 1:cols.stop + 1] = 0
    assert outside.max() == 0  # grey skin is not red: nothing there (but bilinear edges)
  assert np.asarray(logits)[:, 0].min() > 0


def test_a_class_the_region_argues_against_gets_an_empty_heatmap():
  heatmaps, _ = gradcam(RedDetector(), {}, red_square_images(), jnp.array([1, 1]))
  assert float(jnp.abs(heatmaps).max()) == 0.0  # the ReLU of eq. 8


def test_deepconvnet_heatmap_equals_eqs_6_to_8_on_its_conv4_map():
  model = create_model('deepconvnet')
  variables = init_variables(jax.random.key(0), model, (1, 28, 28, 3))
  images = jax.random.normal(jax.random.key(1), (3, 28, 28, 3))
  classes = jnp.array([0, 3, 6])
  heatmaps, _ = gradcam(model, variables, images, classes, normalize=False)

  # By hand: conv4's map after ReLU, then DeepConvNet's layers above it.
  _, state = model.apply(variables, images, capture_intermediates=True,
                         mutable=['intermediates'])
  conv4_map = nn.relu(state['intermediates']['conv4']['__call__'][0])
  params = variables['params']

  def score(feature_map, c):
    x = nn.max_pool(feature_map[None], (2, 2), strides=(2, 2), padding='VALID').reshape(-1)
    x = nn.relu(x @ params['dense1']['kernel'] + params['dense1']['bias'])
    x = nn.relu(x @ params['dense2']['kernel'] + params['dense2']['bias'])
    return (x @ params['logits']['kernel'] + params['logits']['bias'])[c]

  for i in range(3):
    gradient = jax.grad(score)(conv4_map[i], classes[i])  # eq. 6
    weights = gradient.mean(axis=(0, 1))  # eq. 7
    expected = nn.relu((conv4_map[i] * weights).sum(-1))  # eq. 8
    expected = jax.image.resize(expected, (28, 28), 'bilinear')
    np.testing.assert_allclose(heatmaps[i], expected, atol=1e-6)
  assert float(heatmaps.max()) > 0


def test_b3_classifier_heatmaps_of_a_batch_equal_those_of_each_image_alone():
  model = create_model('efficientnetv2_tiny_skin', num_classes=4)
  variables = init_variables(jax.random.key(0), model, (1, 64, 64, 3))
  images = jax.random.uniform(jax.random.key(1), (3, 64, 64, 3), maxval=255.0)
  heatmaps, logits = gradcam(model, variables, images)
  assert heatmaps.shape == (3, 64, 64) and float(heatmaps.max()) == pytest.approx(1.0)
  for i in range(3):
    alone, _ = gradcam(model, variables, images[i:i + 1], jnp.argmax(logits[i:i + 1], -1))
    np.testing.assert_allclose(alone[0], heatmaps[i], atol=1e-5)


def test_the_reports_gradcam_examples_are_half_right_half_wrong():
  from skinjax.evaluation.evaluate import sample_right_and_wrong
  labels = np.zeros(20, int)
  predicted = np.where(np.arange(20) % 2 == 0, 0, 1)  # even indices right, odd wrong
  chosen = sample_right_and_wrong(labels, predicted, 8)
  assert len(chosen) == 8 and list(chosen) == sorted(set(chosen))
  assert (chosen % 2 == 0).sum() == 4 and (chosen % 2 == 1).sum() == 4
  few_wrong = np.zeros(20, int)
  few_wrong[[3, 11]] = 1
  chosen = sample_right_and_wrong(labels, few_wrong, 8)  # 2 wrong: 6 right fill the count
  assert len(chosen) == 8 and {3, 11} <= set(chosen.tolist())
  assert len(sample_right_and_wrong(labels, labels, 8)) == 8  # all right
  assert sorted(sample_right_and_wrong(labels[:5], predicted[:5], 8)) == [0, 1, 2, 3, 4]
