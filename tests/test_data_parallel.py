"""One step over a global batch gives the same result on 1 device and on 4, in both modes.

The test session has four virtual CPU devices (see conftest.py).
"""

import jax
import numpy as np
import optax
import pytest

from skinjax.models import create_model
from skinjax.train.parallel import PmapParallel, make_parallel
from skinjax.train.state import create_train_state, keras_adam
from skinjax.train.tasks import ClassificationTask, SegmentationTask

GLOBAL_BATCH = 8


def classification_setup():
  rng = np.random.default_rng(0)
  batch = {'image': rng.normal(size=(GLOBAL_BATCH, 28, 28, 3)).astype(np.float32),
           'label': rng.integers(0, 7, GLOBAL_BATCH).astype(np.int32)}
  return create_model('deepconvnet'), ClassificationTask(7), batch


def segmentation_setup():
  rng = np.random.default_rng(1)
  batch = {'image': rng.normal(size=(GLOBAL_BATCH, 32, 32, 3)).astype(np.float32),
           'mask': (rng.random((GLOBAL_BATCH, 32, 32, 1)) < 0.3).astype(np.float32)}
  # No dropout: its masks are drawn per device under pmap, so they could not match.
  # Width 4, not unet_tiny's 2: two channels per BatchNorm amplify float32 round-off in
  # the gradient a hundredfold (1.5e-2 vs 3.7e-4 of the update, measured); depth 2 keeps
  # compilation short.
  model = create_model('unet', base_width=4, depth=2, dropout_rate=0.0)
  return model, SegmentationTask('jaccard'), batch


SETUPS = {'deepconvnet': classification_setup, 'unet': segmentation_setup}


def one_step(setup, mode, num_devices, tx, **parallel_kwargs):
  model, task, batch = SETUPS[setup]()
  if mode == 'pmap':
    parallel = PmapParallel(model, task, jax.devices()[:num_devices], **parallel_kwargs)
  else:
    parallel = make_parallel(mode, model, task, jax.devices()[:num_devices])
  state = create_train_state(jax.random.key(0), model, (1,) + batch['image'].shape[1:], tx)
  initial = jax.device_get(state.params)
  new_state, metrics = parallel.train_step(parallel.replicate(state),
                                           parallel.replicate(task.empty_metrics()),
                                           parallel.shard_batch(batch), jax.random.key(1))
  return initial, parallel.fetch(new_state), parallel.fetch(metrics).compute()


@pytest.fixture(scope='module')
def sgd_results():
  """SGD, so that parameter differences are gradient differences (see the Adam test)."""
  results = {}
  for setup in SETUPS:
    for mode in ('pmap', 'jit'):
      for num_devices in (1, 4):
        results[setup, mode, num_devices] = one_step(setup, mode, num_devices, optax.sgd(0.5))
  return results


def assert_trees_close(actual, expected, rtol=1e-5):
  """rtol 1e-5 per element, with an absolute floor of rtol times the largest magnitude in
  the tree: sums taken in another order differ by float32 round-off of the tree's scale,
  which elements near zero (a zero-initialised bias after one step) cannot carry
  relatively. test_unsynchronised_batch_norm_is_caught shows the check still bites."""
  scale = max((float(np.abs(x).max()) for x in jax.tree.leaves(expected)), default=0.0)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale,
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize('setup', SETUPS)
@pytest.mark.parametrize('mode', ['pmap', 'jit'])
def test_four_devices_match_one_device(sgd_results, setup, mode):
  initial, one, one_metrics = sgd_results[setup, mode, 1]
  _, four, four_metrics = sgd_results[setup, mode, 4]
  # The step moved the parameters far beyond the tolerance, so agreement means something.
  moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(one.params),
                                                          jax.tree.leaves(initial)))
  assert moved > 1e-3
  assert_trees_close(four.params, one.params)
  # BatchNorm running statistics of the global batch (this U-Net has 10 BatchNorms).
  assert_trees_close(four.batch_stats, one.batch_stats)
  assert int(four.step) == int(one.step) == 1
  assert abs(four_metrics['loss'] - one_metrics['loss']) < 1e-6
  assert four_metrics.get('count', four_metrics.get('images')) == GLOBAL_BATCH


def test_unsynchronised_batch_norm_is_caught(sgd_results):
  """The tolerance above is tight enough to see per-device BatchNorm statistics."""
  _, one, _ = sgd_results['unet', 'pmap', 1]
  _, local, _ = one_step('unet', 'pmap', 4, optax.sgd(0.5), sync_batch_norm=False)
  with pytest.raises(AssertionError):
    assert_trees_close(local.batch_stats, one.batch_stats)
  with pytest.raises(AssertionError):
    assert_trees_close(local.params, one.params)


@pytest.mark.parametrize('setup', SETUPS)
def test_pmap_and_jit_agree(sgd_results, setup):
  assert_trees_close(sgd_results[setup, 'jit', 4][1].params,
                     sgd_results[setup, 'pmap', 4][1].params)


def test_adam_step_agrees_where_gradients_are_not_round_off():
  """Adam divides by sqrt(v): a gradient that is exactly 0 in exact arithmetic (a conv
  bias in front of BatchNorm) becomes round-off whose sign Adam turns into a full step.
  DeepConvNet has no BatchNorm, so its Adam step agrees to a tolerance relative to lr."""
  _, one, _ = one_step('deepconvnet', 'pmap', 1, keras_adam(1e-3))
  _, four, _ = one_step('deepconvnet', 'jit', 4, keras_adam(1e-3))
  assert_trees_close(four.params, one.params)


@pytest.mark.parametrize('mode', ['pmap', 'jit'])
def test_fresh_metrics_each_epoch_reuse_the_compiled_step(mode, compile_counter):
  """State and metrics fed back from a step and fresh ones from `replicate` are placed
  alike, so epochs after the first compile nothing."""
  compiles = compile_counter
  model, task, batch = classification_setup()
  parallel = make_parallel(mode, model, task, jax.devices()[:2])
  state = parallel.replicate(create_train_state(jax.random.key(0), model, (1, 28, 28, 3),
                                                keras_adam(1e-3)))
  batch = parallel.shard_batch(batch)
  for epoch in range(2):
    metrics = parallel.replicate(task.empty_metrics())
    for _ in range(2):
      state, metrics = parallel.train_step(state, metrics, batch, jax.random.key(1))
    if epoch == 0:
      jax.block_until_ready(state)
      compiles.clear()  # the first step's compilation
  jax.block_until_ready(state)
  assert compiles == []


@pytest.mark.parametrize('mode', ['pmap', 'jit'])
def test_a_batch_not_divisible_by_the_device_count_is_refused(mode):
  model, task, batch = classification_setup()
  parallel = make_parallel(mode, model, task, jax.devices()[:4])
  odd = {key: value[:6] for key, value in batch.items()}
  with pytest.raises(ValueError, match=r'global batch size 6: must be a positive multiple of '
                                       r'the 4 device\(s\)'):
    parallel.shard_batch(odd)


def test_an_unknown_parallel_mode_is_refused():
  model, task, _ = classification_setup()
  with pytest.raises(ValueError, match=r"--parallel must be one of \('pmap', 'jit'\), got 'xmap'"):
    make_parallel('xmap', model, task)
