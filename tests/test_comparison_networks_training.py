"""The papers' comparison networks train as paper 2's own model does: its two-phase config
(head on a frozen backbone, BatchNorm statistics included, then fine-tuning) on the
synthetic ISIC layout, each at a reduced depth or width (its `_tiny` variant) and at the
smallest input Keras builds it for."""

import os
import sys

import jax
import numpy as np
import pytest

from skinjax.data import synthetic
from skinjax.train import build, phases, trainer
from skinjax.train.checkpoint import Checkpointer
from skinjax.train.spec import RunSpec
from skinjax.train.state import init_variables

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'launch'))
import common_flags  # noqa: E402

# Registry name -> image size (Keras' smallest input for the family, at least 32). In make
# test: VGG16 (no BatchNorm: an empty batch_stats through both phases and the checkpoints),
# ResNet50 (BatchNorm, residuals) and MobileNet (the per-backend depthwise convolution's own
# gradient); the rest, 35 to 70 s each on 2 cores (compiling phase 2's backward pass), in
# `make test-slow`.
SLOW = pytest.mark.slow
MODELS = {'vgg16_tiny_skin': 32, 'resnet_tiny_skin': 32, 'mobilenet_tiny_skin': 32,
          'resnetv2_tiny_skin': 32, 'mobilenetv2_tiny_skin': 32, 'inceptionv3_tiny_skin': 75,
          'xception_tiny_skin': 71, 'efficientnet_tiny_skin': 32}
IN_MAKE_TEST = ('vgg16_tiny_skin', 'resnet_tiny_skin', 'mobilenet_tiny_skin')
VGG16_WITHOUT_BATCHNORM = ('vgg16_tiny_skin',)


@pytest.fixture(scope='module')
def isic9(tmp_path_factory):
  """The synthetic ISIC layout, built into TFDS once for every model."""
  root = tmp_path_factory.mktemp('isic9')
  manual = synthetic.write_isic9(root / 'ISIC', train_per_class=2, test_per_class=1,
                                 image_size=(48, 48))
  return {'data_dir': str(root / 'tfds'), 'isic9': str(manual)}


def restore_phase(spec, workdir, index, num_classes):
  checkpoints = Checkpointer(str(workdir / 'phases' / spec.phases[index].name), read_only=True)
  model = build.model(spec, num_classes)
  template, _ = phases.state_template(spec.phases[index], model, spec.image_size)
  state, _, _ = checkpoints.restore(template)
  return state


@pytest.mark.parametrize('name', [name if name in IN_MAKE_TEST else pytest.param(name, marks=SLOW)
                                  for name in MODELS])
def test_two_phases_freeze_then_tune_the_backbone(isic9, tmp_path, name):
  size = MODELS[name]
  spec = RunSpec.from_config(common_flags.load_config('efficientnetv2_b3_isic9'))
  spec = spec.replace(model=name, image_size=size, batch_size=4, eval_batch_size=4,
                      phases=tuple(phase.replace(epochs=1) for phase in spec.phases))
  # Training alone (its validation passes included): the test-split evaluation and its
  # figures are the same code for every model, tested on B3 elsewhere.
  result = trainer.train(spec, str(tmp_path / 'run'), data_dir=isic9['data_dir'],
                         manual_dir=isic9['isic9'], show_progress=False)
  assert [record['phase'] for record in result.history] == [p.name for p in spec.phases]
  for record in result.history:
    assert np.isfinite(record['train']['loss']) and 0 <= record['validation']['accuracy'] <= 1
  # The backbone as the trainer initialises it (seeded), before phase 1.
  model = phases.phase_model(spec.phases[0], build.model(spec, 9))
  initial = init_variables(jax.random.key(spec.seed), model, (1, size, size, 3))
  frozen = restore_phase(spec, tmp_path / 'run', 0, 9)
  tuned = restore_phase(spec, tmp_path / 'run', 1, 9)

  def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert same(frozen.params['backbone'], initial['params']['backbone'])
  assert not same(frozen.params['head'], initial['params']['head'])  # the head learnt
  assert not same(tuned.params['backbone'], frozen.params['backbone'])
  if name not in VGG16_WITHOUT_BATCHNORM:
    assert same(frozen.batch_stats['backbone'], initial['batch_stats']['backbone'])
    assert not same(tuned.batch_stats['backbone'], frozen.batch_stats['backbone'])
