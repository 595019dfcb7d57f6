"""Paper 2's two phases: the optimiser and the model agree on what is frozen, and it stays put."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from skinjax.models import create_model
from skinjax.train.parallel import make_parallel
from skinjax.train.state import TrainState, init_variables, keras_adam
from skinjax.train.tasks import ClassificationTask
from skinjax.train.transfer import (FROZEN, TRAINABLE, trainable_labels, transfer_optimizer,
                                    with_pretrained_backbone)

SHAPE = (4, 32, 32, 3)


@pytest.fixture(scope='module')
def variables():
  # The parameter tree does not depend on the phase: one initialisation serves both.
  return init_variables(jax.random.key(0), create_model('efficientnetv2_tiny_skin', num_classes=3),
                        (1,) + SHAPE[1:])


def labels_by_layer(labels):
  flat = traverse_util.flatten_dict(labels)
  by_layer = {}
  for path, label in flat.items():
    by_layer.setdefault(path[:2], set()).add(label)
  assert all(len(v) == 1 for v in by_layer.values())  # a layer is frozen or not, as a whole
  return {'/'.join(k): v.pop() for k, v in by_layer.items()}


def test_phase_1_labels_freeze_the_whole_backbone_and_train_the_head(variables):
  labels = labels_by_layer(trainable_labels(variables['params'], train_backbone=False))
  assert {k for k, v in labels.items() if v == TRAINABLE} == {
      'head/pool_bn', 'head/hidden', 'head/hidden_bn', 'head/logits'}


def test_phase_2_with_two_trainable_blocks_trains_them_the_top_and_the_head(variables):
  labels = labels_by_layer(trainable_labels(variables['params'], train_backbone=True,
                                            trainable_blocks=2))
  backbone_trainable = {k for k, v in labels.items() if v == TRAINABLE and k.startswith('backbone')}
  # The tiny backbone's blocks: 1a, 2a, 3a, 4a, 5a, 5b, 6a, 6b.
  assert backbone_trainable == {'backbone/block6a', 'backbone/block6b', 'backbone/top_conv',
                                'backbone/top_bn'}
  assert labels['backbone/stem_conv'] == labels['backbone/block5b'] == FROZEN


def one_train_step(variables, model):
  task = ClassificationTask(3)
  tx = transfer_optimizer(model, keras_adam(1e-2))
  state = TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                     batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params']),
                     tx=tx)
  parallel = make_parallel('jit', model, task, jax.devices()[:1])
  rng = np.random.default_rng(0)
  batch = {'image': rng.uniform(0, 255, SHAPE).astype(np.float32),
           'label': np.array([0, 1, 2, 0], np.int32)}
  metrics = parallel.replicate(task.empty_metrics())
  state, _ = parallel.train_step(parallel.replicate(state), metrics, parallel.shard_batch(batch),
                                 jax.random.key(1))
  return parallel.fetch(state)


def changed_layers(before, after):
  """{'params/backbone/block1a', ...}: layers with any array that moved."""
  changed = set()
  for collection in ('params', 'batch_stats'):
    old = traverse_util.flatten_dict(before[collection])
    new = traverse_util.flatten_dict(after[collection])
    for path in old:
      if not np.array_equal(old[path], new[path]):
        changed.add('/'.join((collection,) + path[:2]))
  return changed


def test_phase_1_step_moves_only_the_head_and_its_statistics(variables):
  model = create_model('efficientnetv2_tiny_skin', num_classes=3, train_backbone=False)
  state = one_train_step(variables, model)
  after = {'params': state.params, 'batch_stats': state.batch_stats}
  assert changed_layers(variables, after) == {
      'params/head/pool_bn', 'params/head/hidden', 'params/head/hidden_bn', 'params/head/logits',
      'batch_stats/head/pool_bn', 'batch_stats/head/hidden_bn'}


def test_phase_2_step_moves_the_last_block_and_top_but_not_the_frozen_rest(variables):
  model = create_model('efficientnetv2_tiny_skin', num_classes=3, trainable_blocks=1)
  state = one_train_step(variables, model)
  changed = changed_layers(variables, {'params': state.params, 'batch_stats': state.batch_stats})
  backbone = {k for k in changed if '/backbone/' in k}
  assert {k.split('/')[2] for k in backbone} == {'block6b', 'top_conv', 'top_bn'}
  # Frozen BatchNorms keep their statistics, as Keras' trainable=False layers do.
  assert 'batch_stats/backbone/block6b' in changed
  assert 'batch_stats/backbone/block6a' not in changed


def test_a_pretrained_backbone_replaces_the_classifier_backbone_only_if_it_fits(variables):
  backbone = {c: jax.tree.map(jnp.zeros_like, variables[c]['backbone'])
              for c in ('params', 'batch_stats')}
  grafted = with_pretrained_backbone(variables, backbone)
  assert float(jnp.abs(grafted['params']['backbone']['stem_conv']['kernel']).max()) == 0
  assert grafted['params']['head'] is variables['params']['head']
  backbone['params']['stem_conv'] = {'kernel': jnp.zeros((3, 3, 3, 9))}
  with pytest.raises(ValueError, match=r'params/stem_conv/kernel: model \(3, 3, 3, 8\), '
                                       r'pretrained \(3, 3, 3, 9\)'):
    with_pretrained_backbone(variables, backbone)
