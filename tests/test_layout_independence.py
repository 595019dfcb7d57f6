"""Augmentation and dropout draw per example, so a run gives the same numbers on 1 device
or 4, under pmap or jit: 5 training steps of the tiny U-Net (spatial dropout 0.4, paper
1's rotation and flip) end with the same parameters to float32 round-off. (Round-off
grows with the steps: on an AVX-512 Xeon 5 steps differ by 3e-6, 20 by 4e-5, where other
draws move parameters by 4e-4 after 5 steps.)

The steps use SGD: Adam divides by the root of the squared gradient, which turns the
round-off of the conv biases that BatchNorm cancels (exact gradient zero) into steps of
the learning rate's size, and that would measure Adam, not the draws.

The training comparison runs in a process of its own under XLA's default code generator:
with the older emitters that conftest.py sets for speed, the 1- and 4-device runs end
1.4e-4 apart (the first layer's kernels; 2.7e-6 with the defaults), too near the 4.4e-4
that other draws make for the comparison to tell them apart.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

import launcher_env

from skinjax import augment
from skinjax.data import pipeline
from skinjax.data.arrays import SplitArrays
from skinjax.models import create_model
from skinjax.models.dropout import ExampleDropout, example_keys, global_rows
from skinjax.train import passes
from skinjax.train.parallel import make_parallel
from skinjax.train.state import create_train_state
from skinjax.train.tasks import SegmentationTask

STEPS, BATCH, SIZE = 5, 8, 32


def lesion_arrays(n=40, seed=0):
  rng = np.random.default_rng(seed)
  masks = np.zeros((n, SIZE, SIZE, 1), np.uint8)
  for i, (row, col) in enumerate(rng.integers(4, 20, (n, 2))):
    masks[i, row:row + 10, col:col + 8] = 1
  images = np.clip(masks * 120 + rng.normal(80, 20, (n, SIZE, SIZE, 3)), 0, 255)
  return SplitArrays(images.astype(np.uint8), np.zeros(n, np.int32),
                     np.array([str(i) for i in range(n)]), masks)


def train(mode, devices, seed=1):
  model, task = create_model('unet_tiny'), SegmentationTask('jaccard')
  preprocess = pipeline.Preprocess(augment=augment.PAPER1_SEGMENTATION)
  parallel = make_parallel(mode, model, task, jax.devices()[:devices], preprocess=preprocess)
  feed = pipeline.InputPipeline(lesion_arrays(), parallel)
  state = parallel.replicate(create_train_state(jax.random.key(0), model,
                                                (1, SIZE, SIZE, 3), optax.sgd(0.05)))
  order = np.stack([pipeline.train_order(np.arange(40), BATCH, epoch=e, seed=0)
                    for e in range(STEPS // 5)]).reshape(STEPS, BATCH)
  state, metrics, _ = passes.train_epoch(parallel, feed, state, order, jax.random.key(seed))
  return parallel.fetch(state), metrics


def compare_one_and_four_devices():
  one, one_metrics = train('jit', 1)
  for mode in ('pmap', 'jit'):
    four, four_metrics = train(mode, 4)
    assert int(four.step) == STEPS
    scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(one.params))
    for a, b in zip(jax.tree.leaves(four.params), jax.tree.leaves(one.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale, err_msg=mode)
    assert four_metrics['loss'] == pytest.approx(one_metrics['loss'], rel=1e-5)
  # Other draws move the parameters far more than that: the comparison sees the draws.
  other, _ = train('jit', 1, seed=2)
  assert max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(other.params),
                                                        jax.tree.leaves(one.params))) > 1e-4


def test_steps_with_augmentation_and_dropout_match_on_one_and_four_devices():
  env = launcher_env.with_devices(4, fusion_emitters=True)
  code = 'import test_layout_independence as t; t.compare_one_and_four_devices()'
  done = subprocess.run([sys.executable, '-c', code], cwd=os.path.dirname(__file__), env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]


def test_dropout_masks_depend_on_the_examples_global_row_only():
  x = np.ones((8, 3, 3, 4), np.float32)
  layer = ExampleDropout(0.5, broadcast_dims=(1, 2))
  key = jax.random.key(3)
  whole = layer.apply({}, x, deterministic=False, rngs={'dropout': key})
  # Two devices of four rows each, under pmap: the same masks, row for row.
  halves = jax.pmap(lambda part: ExampleDropout(0.5, broadcast_dims=(1, 2),
                                                axis_name='d').apply(
      {}, part, deterministic=False, rngs={'dropout': key}), axis_name='d',
      devices=jax.devices()[:2])(x.reshape(2, 4, 3, 3, 4))
  np.testing.assert_array_equal(np.asarray(halves).reshape(whole.shape), whole)
  assert set(np.unique(whole)) == {0.0, 2.0}  # kept units scaled by 1 / keep
  # A whole channel of an example is kept or dropped (Keras' SpatialDropout2D).
  assert (whole.min(axis=(1, 2)) == whole.max(axis=(1, 2))).all()
  np.testing.assert_array_equal(global_rows(4), np.arange(4))


def test_augmented_examples_depend_on_their_global_row_only():
  """Paper 1's segmentation augmentation of a global batch of 8: on one device, and on
  four devices of two rows each under pmap, every example gets the same transform."""
  arrays = lesion_arrays(8)
  images = arrays.images.astype(np.float32)
  masks = arrays.masks.astype(np.float32)
  config = augment.PAPER1_SEGMENTATION

  def augmented(key, images, masks, axis_name=None):
    keys = example_keys(key, images.shape[0], axis_name)
    return augment.augment_batch(keys, images, masks, config=config)

  whole = jax.jit(augmented)
  whole_images, whole_masks = whole(jax.random.key(5), images, masks)
  split = jax.pmap(lambda i, m: augmented(jax.random.key(5), i, m, 'd'), axis_name='d',
                   devices=jax.devices()[:4])
  part_images, part_masks = split(images.reshape(4, 2, *images.shape[1:]),
                                  masks.reshape(4, 2, *masks.shape[1:]))
  assert not np.allclose(whole_images, images)  # the batch was transformed
  np.testing.assert_allclose(np.asarray(part_images).reshape(whole_images.shape),
                             whole_images, atol=1e-3)
  np.testing.assert_array_equal(np.asarray(part_masks).reshape(whole_masks.shape), whole_masks)
  # Another key gives other transforms: the comparison sees the draws.
  other_images, _ = whole(jax.random.key(6), images, masks)
  assert np.abs(np.asarray(other_images) - whole_images).max() > 10
