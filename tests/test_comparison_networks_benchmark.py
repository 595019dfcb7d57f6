"""benchmarks/keras_models.py's counterpart of each comparison network under paper 2's head
is the same network as skinjax's: as many parameters (Keras counting BatchNorm's moving
statistics too), and the benchmark suite times each beside it."""

import os
import sys

os.environ['KERAS_BACKEND'] = 'tensorflow'  # before keras is imported anywhere

import jax
import numpy as np
import pytest

from skinjax.models import create_model

pytest.importorskip('keras')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks'))
import keras_models  # noqa: E402
import suite  # noqa: E402

SIZE = 75  # at least every network's smallest input (InceptionV3's)


def parameter_count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('name', sorted(keras_models.COMPARISON_NETWORKS))
def test_the_keras_baseline_has_the_same_parameters(name):
  model = create_model(name)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             np.zeros((1, SIZE, SIZE, 3), np.float32)))
  assert parameter_count(shapes) == keras_models.build(name, SIZE).count_params()


def test_the_cpu_suite_times_every_comparison_network_beside_keras():
  rows = {row.model for row in suite.preset('cpu')}
  for name in keras_models.COMPARISON_NETWORKS:
    assert name in rows, name
    assert suite.BENCH_MODELS[name].keras == name
    assert suite.BENCH_MODELS[name].timm  # and beside timm's port
