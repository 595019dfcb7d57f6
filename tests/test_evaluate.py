"""Evaluation pads the final partial batch: exact metrics, no new compilation."""

import jax
import numpy as np
import optax
import pytest
from sklearn import metrics as skm

from skinjax.models import create_model
from skinjax.train.evaluate import evaluate, pad_batch
from skinjax.train.parallel import make_parallel
from skinjax.train.state import TrainState, init_variables
from skinjax.train.tasks import ClassificationTask

def test_pad_batch_repeats_and_marks_padding_invalid():
  batch = {'image': np.arange(3 * 2).reshape(3, 2), 'label': np.array([4, 5, 6])}
  padded = pad_batch(batch, 5)
  np.testing.assert_array_equal(padded['label'], [4, 5, 6, 4, 4])
  np.testing.assert_array_equal(padded['valid'], [True, True, True, False, False])
  with pytest.raises(ValueError, match='larger than batch_size 2'):
    pad_batch(batch, 2)


def batches(images, labels, batch_size):
  for start in range(0, len(images), batch_size):
    yield {'image': images[start:start + batch_size], 'label': labels[start:start + batch_size]}


@pytest.mark.parametrize('mode', ['pmap', 'jit'])
def test_partial_final_batch_gives_exact_metrics_without_recompiling(mode, compile_counter):
  model, task = create_model('deepconvnet'), ClassificationTask(7)
  parallel = make_parallel(mode, model, task, jax.devices()[:4])
  variables = init_variables(jax.random.key(0), model, (1, 28, 28, 3))
  state = TrainState(step=np.zeros((), np.int32), params=variables['params'], batch_stats={},
                     opt_state=(), tx=optax.identity())
  rng = np.random.default_rng(0)
  images = rng.normal(size=(22, 28, 28, 3)).astype(np.float32)
  labels = rng.integers(0, 7, 22).astype(np.int32)
  placed = parallel.replicate(state)
  evaluate(parallel, placed, task, batches(images[:16], labels[:16], 8), 8)  # warm-up
  compile_counter.clear()
  result = evaluate(parallel, placed, task, batches(images, labels, 8), 8)  # 8 + 8 + 6
  assert compile_counter == []
  predictions = np.argmax(model.apply(variables, images), axis=-1)
  assert result['count'] == 22
  assert abs(result['accuracy'] - skm.accuracy_score(labels, predictions)) < 1e-6
  np.testing.assert_array_equal(result['support'], np.bincount(labels, minlength=7))
