"""The training epoch the trainer runs learns: DeepConvNet learns colour-coded classes;
bfloat16 keeps float32 state."""

import jax
import jax.numpy as jnp
import numpy as np

from skinjax.data import pipeline
from skinjax.data.arrays import SplitArrays
from skinjax.models import create_model
from skinjax.train import passes
from skinjax.train.parallel import make_parallel
from skinjax.train.state import create_train_state, keras_adam
from skinjax.train.tasks import ClassificationTask


def colour_arrays(n, seed):
  """uint8 images of 7 colours under heavy noise, labelled by colour."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 7, n).astype(np.int32)
  colours = np.random.default_rng(99).integers(30, 225, (7, 3))
  images = np.clip(colours[labels][:, None, None] + rng.normal(0, 40, (n, 28, 28, 3)), 0, 255)
  return SplitArrays(images.astype(np.uint8), labels, np.array([str(i) for i in range(n)]))


def train_and_score(mode, dtype, steps, devices=2):
  model, task = create_model('deepconvnet', dtype=dtype), ClassificationTask(7)
  parallel = make_parallel(mode, model, task, jax.devices()[:devices],
                           # centred and scaled to about [-2, 2], as the colours were before
                           preprocess=pipeline.Preprocess(mean=(127.5,) * 3, std=(64.0,) * 3))
  train = pipeline.InputPipeline(colour_arrays(512, 0), parallel)
  test = pipeline.InputPipeline(colour_arrays(128, 1), parallel)
  state = parallel.replicate(create_train_state(jax.random.key(0), model, (1, 28, 28, 3),
                                                keras_adam(1e-3)))
  order = np.random.default_rng(2).integers(0, 512, (steps, 32)).astype(np.int32)
  state, train_metrics, _ = passes.train_epoch(parallel, train, state, order, jax.random.key(1))
  test_metrics, _ = passes.eval_pass(parallel, state, test, pipeline.eval_order(128, 32))
  return parallel.fetch(state), train_metrics, test_metrics


def test_deepconvnet_learns_colour_coded_classes():
  _, train_metrics, test_metrics = train_and_score('pmap', jnp.float32, steps=300)
  assert test_metrics['accuracy'] > 0.9, (train_metrics, test_metrics)


def test_bfloat16_training_keeps_float32_parameters_and_a_finite_loss():
  state, metrics, _ = train_and_score('jit', jnp.bfloat16, steps=3)
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
  assert np.isfinite(metrics['loss'])
