"""Paper 2's launch: one run trains the head on a frozen backbone, then fine-tunes, and
keeps each phase's final weights (its config file, shrunk to the tiny backbone)."""

import json
import os
import sys

import jax
import numpy as np
import pytest

from skinjax.data import synthetic
from skinjax.train import build, phases
from skinjax.train.checkpoint import Checkpointer
from skinjax.train.spec import RunSpec
from training_runs import train

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'launch'))
import common_flags  # noqa: E402


@pytest.fixture(scope='module')
def two_phase_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('isic')
  manual = synthetic.write_isic9(root / 'ISIC', train_per_class=5, test_per_class=1,
                                 image_size=(48, 48))
  spec = RunSpec.from_config(common_flags.load_config('efficientnetv2_b3_isic9'))
  spec = spec.replace(model='efficientnetv2_tiny_skin', image_size=32, batch_size=4,
                      eval_batch_size=4,
                      phases=tuple(phase.replace(epochs=1) for phase in spec.phases))
  workdir = root / 'run'
  metrics = train(spec, workdir, {'data_dir': str(root / 'tfds'), 'isic9': str(manual)})
  return spec, workdir, metrics


def restore_phase(spec, workdir, index):
  phase_dir = workdir / 'phases' / spec.phases[index].name
  checkpoints = Checkpointer(str(phase_dir), read_only=True)
  description, progress = checkpoints.read_config()
  model = build.model(spec, description['num_classes'])
  template, _ = phases.state_template(spec.phases[index], model, spec.image_size)
  state, _, _ = checkpoints.restore(template)
  return state, progress


def test_the_paper_2_config_names_two_phases_the_second_unfreezing_the_backbone():
  spec = RunSpec.from_config(common_flags.load_config('efficientnetv2_b3_isic9'))
  overrides = [dict(phase.model_overrides) for phase in spec.phases]
  assert overrides == [{'train_backbone': False}, {'train_backbone': True}]
  assert spec.phases[1].learning_rate < spec.phases[0].learning_rate


def test_both_phases_run_log_and_keep_their_final_weights(two_phase_run):
  spec, workdir, metrics = two_phase_run
  lines = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [line['phase'] for line in lines] == ['frozen', 'finetune']
  frozen, frozen_progress = restore_phase(spec, workdir, 0)
  tuned, tuned_progress = restore_phase(spec, workdir, 1)
  assert frozen_progress['phase'] == 0 and tuned_progress['phase'] == 1
  assert tuned_progress['step'] == 2 * frozen_progress['step']
  # Phase 2 moved the backbone that phase 1 kept frozen.
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                       frozen.params['backbone'], tuned.params['backbone'])
  assert any(jax.tree.leaves(moved))
  assert 0.0 <= metrics['accuracy'] <= 1.0
  report = json.loads((workdir / 'report' / 'test' / 'report.json').read_text())
  assert len(report['class_names']) == 9
