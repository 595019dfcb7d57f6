"""The loop trains: DeepConvNet learns colour-coded classes; bfloat16 keeps float32 state."""

import jax
import jax.numpy as jnp
import numpy as np

from skinjax.models import create_model
from skinjax.train import loop
from skinjax.train.evaluate import evaluate
from skinjax.train.parallel import make_parallel
from skinjax.train.state import create_train_state, keras_adam
from skinjax.train.tasks import ClassificationTask


def colour_batches(seed, steps, batch_size=32):
  rng = np.random.default_rng(seed)
  colours = np.random.default_rng(99).uniform(-1, 1, (7, 3)).astype(np.float32)
  for _ in range(steps):
    labels = rng.integers(0, 7, batch_size)
    noise = rng.normal(0, 0.5, (batch_size, 28, 28, 3)).astype(np.float32)
    yield {'image': noise + colours[labels][:, None, None], 'label': labels.astype(np.int32)}


def test_deepconvnet_learns_colour_coded_classes():
  model, task = create_model('deepconvnet'), ClassificationTask(7)
  parallel = make_parallel('pmap', model, task, jax.devices()[:2])
  state = create_train_state(jax.random.key(0), model, (1, 28, 28, 3), keras_adam(1e-3))
  state, train_metrics = loop.fit(parallel, parallel.replicate(state), task,
                                  colour_batches(0, 150), jax.random.key(1))
  result = evaluate(parallel, state, task, colour_batches(1, 4), 32)
  assert result['accuracy'] > 0.9, (train_metrics, result)


def test_bfloat16_training_keeps_float32_parameters_and_a_finite_loss():
  model, task = create_model('deepconvnet', dtype=jnp.bfloat16), ClassificationTask(7)
  parallel = make_parallel('jit', model, task, jax.devices()[:2])
  state = create_train_state(jax.random.key(0), model, (1, 28, 28, 3), keras_adam(1e-3))
  state, metrics = loop.fit(parallel, parallel.replicate(state), task, colour_batches(0, 3),
                            jax.random.key(1))
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
  assert np.isfinite(metrics['loss'])
