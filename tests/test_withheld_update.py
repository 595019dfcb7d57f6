"""train_step's guard: a step whose loss is not finite moves nothing but the step counter,
and without skip_nonfinite every later step is withheld too (the host stops the run)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax.models import create_model
from skinjax.train import steps
from skinjax.train.state import create_train_state, keras_adam
from skinjax.train.tasks import ClassificationTask

SHAPE = (4, 28, 28, 3)


@pytest.fixture(scope='module')
def setup():
  model = create_model('deepconvnet', num_classes=3)
  task = ClassificationTask(3)
  state = create_train_state(jax.random.key(0), model, (1,) + SHAPE[1:], keras_adam(1e-2))
  rng = np.random.default_rng(0)
  good = {'image': rng.uniform(0, 1, SHAPE).astype(np.float32),
          'label': np.array([0, 1, 2, 0], np.int32)}
  bad = dict(good, image=good['image'].copy())
  bad['image'][1, 3, 3, 0] = np.nan  # one NaN pixel: the loss and every gradient not finite

  def step(state, batch, skip_nonfinite=False):
    run = jax.jit(lambda s, m, b: steps.train_step(s, m, b, jax.random.key(1), model=model,
                                                     task=task, skip_nonfinite=skip_nonfinite))
    return run(state, task.empty_metrics(), batch)

  return state, good, bad, step


def leaves(state):
  return [np.asarray(x) for x in
          jax.tree.leaves((state.params, state.batch_stats, state.opt_state))]


def assert_same(a, b):
  for x, y in zip(leaves(a), leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_a_finite_step_is_the_optimiser_update(setup):
  state, good, _, step = setup
  new, metrics = step(state, good)
  assert int(new.step) == 1 and int(new.nonfinite_steps) == 0
  assert int(new.first_nonfinite_step) == -1
  assert any(not np.array_equal(x, y) for x, y in zip(leaves(new), leaves(state)))
  assert np.isfinite(float(metrics.loss.total))


def test_a_nonfinite_step_changes_nothing_but_the_counters(setup):
  state, good, bad, step = setup
  moved, _ = step(state, good)
  withheld, metrics = step(moved, bad)
  assert_same(withheld, moved)
  assert int(withheld.step) == 2
  assert int(withheld.nonfinite_steps) == 1 and int(withheld.first_nonfinite_step) == 1
  assert float(metrics.loss.total) == 0.0  # the bad batch's metrics are left out too


def test_after_a_nonfinite_step_later_updates_are_withheld_unless_skipping(setup):
  state, good, bad, step = setup
  withheld, _ = step(state, bad)
  still, _ = step(withheld, good)
  assert_same(still, state)
  assert int(still.nonfinite_steps) == 1 and int(still.first_nonfinite_step) == 0
  skipped, _ = step(state, bad, skip_nonfinite=True)
  resumed, _ = step(skipped, good, skip_nonfinite=True)
  assert any(not np.array_equal(x, y) for x, y in zip(leaves(resumed), leaves(state)))
  assert int(resumed.nonfinite_steps) == 1 and int(resumed.step) == 2
