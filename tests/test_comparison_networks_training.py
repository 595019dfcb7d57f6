"""The papers' comparison networks train as paper 2's own model does: its two-phase config
(head on a frozen backbone, BatchNorm statistics included, then fine-tuning) on the
synthetic ISIC layout, at a reduced depth (one or two blocks per stage)."""

import os
import sys

import jax
import numpy as np
import pytest

from skinjax.data import synthetic
from skinjax.train import build, phases
from skinjax.train.checkpoint import Checkpointer
from skinjax.train.spec import RunSpec
from skinjax.train.state import init_variables
from training_runs import train

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'launch'))
import common_flags  # noqa: E402

MODELS = ['resnet_tiny_skin']


def restore_phase(spec, workdir, index, num_classes):
  checkpoints = Checkpointer(str(workdir / 'phases' / spec.phases[index].name), read_only=True)
  model = build.model(spec, num_classes)
  template, _ = phases.state_template(spec.phases[index], model, spec.image_size)
  state, _, _ = checkpoints.restore(template)
  return state


@pytest.mark.parametrize('name', MODELS)
def test_two_phases_freeze_then_tune_the_backbone(tmp_path, name):
  manual = synthetic.write_isic9(tmp_path / 'ISIC', train_per_class=4, test_per_class=1,
                                 image_size=(48, 48))
  spec = RunSpec.from_config(common_flags.load_config('efficientnetv2_b3_isic9'))
  spec = spec.replace(model=name, image_size=32, batch_size=4, eval_batch_size=4,
                      phases=tuple(phase.replace(epochs=1) for phase in spec.phases))
  metrics = train(spec, tmp_path / 'run', {'data_dir': str(tmp_path / 'tfds'),
                                           'isic9': str(manual)})
  assert 0.0 <= metrics['accuracy'] <= 1.0
  # The backbone as the trainer initialises it (seeded), before phase 1.
  model = phases.phase_model(spec.phases[0], build.model(spec, 9))
  initial = init_variables(jax.random.key(spec.seed), model, (1, 32, 32, 3))
  frozen = restore_phase(spec, tmp_path / 'run', 0, 9)
  tuned = restore_phase(spec, tmp_path / 'run', 1, 9)

  def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert same(frozen.params['backbone'], initial['params']['backbone'])
  assert same(frozen.batch_stats['backbone'], initial['batch_stats']['backbone'])
  assert not same(frozen.params['head'], initial['params']['head'])  # the head learnt
  assert not same(tuned.params['backbone'], frozen.params['backbone'])
  assert not same(tuned.batch_stats['backbone'], frozen.batch_stats['backbone'])
