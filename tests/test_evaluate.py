"""One inference pass: exact metrics with the final partial batch padded (no new
compilation), and the per-example outputs of the same single application of the model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import metrics as skm

from skinjax.data import pipeline
from skinjax.data.arrays import SplitArrays
from skinjax.models import create_model
from skinjax.models.deepconvnet import DeepConvNet
from skinjax.train import passes
from skinjax.train.parallel import make_parallel
from skinjax.train.state import TrainState, init_variables
from skinjax.train.tasks import ClassificationTask


def random_split(n, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 28, 28, 3)).astype(np.uint8)
  labels = rng.integers(0, 7, n).astype(np.int32)
  return SplitArrays(images, labels, np.array([str(i) for i in range(n)]))


def inference_state(model):
  variables = init_variables(jax.random.key(0), model, (1, 28, 28, 3))
  return TrainState(step=np.zeros((), np.int32), params=variables['params'], batch_stats={},
                    opt_state=(), tx=optax.identity()), variables


@pytest.mark.parametrize('mode', ['pmap', 'jit'])
def test_partial_final_batch_gives_exact_metrics_and_outputs_without_recompiling(
    mode, compile_counter):
  model, task = create_model('deepconvnet'), ClassificationTask(7)
  parallel = make_parallel(mode, model, task, jax.devices()[:4],
                           preprocess=pipeline.Preprocess())
  state, variables = inference_state(model)
  arrays = random_split(22)
  feed = pipeline.InputPipeline(arrays, parallel)
  placed = parallel.replicate(state)
  passes.eval_pass(parallel, placed, feed, pipeline.eval_order(16, 8))  # warm-up
  compile_counter.clear()
  result, outputs = passes.eval_pass(parallel, placed, feed, pipeline.eval_order(22, 8),
                                     keep_outputs=True)  # 8 + 8 + 6
  assert compile_counter == []
  logits = model.apply(variables, arrays.images.astype(np.float32) / 255.0)
  predictions = np.argmax(logits, axis=-1)
  assert result['count'] == 22
  assert abs(result['accuracy'] - skm.accuracy_score(arrays.labels, predictions)) < 1e-6
  np.testing.assert_array_equal(result['support'], np.bincount(arrays.labels, minlength=7))
  np.testing.assert_array_equal(outputs['predicted'], predictions)
  np.testing.assert_allclose(outputs['probabilities'], jax.nn.softmax(logits), atol=1e-6)


class CountedDeepConvNet(DeepConvNet):
  """DeepConvNet that reports, at run time, each batch it is applied to."""

  def __call__(self, x, *, train: bool = False):
    jax.debug.callback(lambda rows: APPLIED.append(int(rows)), jnp.int32(x.shape[0]))
    return super().__call__(x, train=train)


APPLIED: list[int] = []


def test_an_evaluation_applies_the_model_once_per_example():
  model = CountedDeepConvNet(num_classes=7)
  parallel = make_parallel('jit', model, ClassificationTask(7), jax.devices()[:1],
                           preprocess=pipeline.Preprocess())
  state, _ = inference_state(model)
  feed = pipeline.InputPipeline(random_split(20), parallel)
  APPLIED.clear()
  _, outputs = passes.eval_pass(parallel, parallel.replicate(state), feed,
                                pipeline.eval_order(20, 8), keep_outputs=True)
  jax.effects_barrier()
  assert APPLIED == [8, 8, 8]  # 20 examples padded to 24: one pass, metrics and outputs
  assert outputs['probabilities'].shape == (20, 7)
