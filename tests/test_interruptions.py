"""Runs stopped by real signals (SIGKILL during and between checkpoint writes, SIGTERM) or
by a checkpoint write the disk refuses resume from their last complete checkpoint and end
where an uninterrupted run ends; a non-finite loss stops a run naming its step and batch,
saving nothing after the last good checkpoint, or is skipped and counted with
skip_nonfinite."""

import json
import os
import re
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skinjax.data import experiment_data, pipeline
from skinjax.evaluation.restore import restore_run
from skinjax.train import build, trainer
from skinjax.train.checkpoint import Checkpointer
from skinjax.train.spec import ConfigError
from skinjax.train.tasks import ClassificationTask
from skinjax.train.workdir import checkpoint_dir
from training_runs import classifier_spec, train, train_only

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'interrupted_run.py')


def run_interrupted(workdir, layouts, signal_name, moment, count):
  return subprocess.run(
      [sys.executable, SCRIPT, str(workdir), layouts['data_dir'], layouts['ham10000'],
       signal_name, moment, str(count)], capture_output=True, text=True, timeout=600)


def assert_same_params(workdir, reference_workdir):
  resumed = restore_run(str(workdir), step='latest')
  reference = restore_run(str(reference_workdir), step='latest')
  assert resumed.step == reference.step
  for a, b in zip(jax.tree.leaves(resumed.state.params),
                  jax.tree.leaves(reference.state.params)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('moment,count', [
    ('save', 3),   # SIGKILL while the third checkpoint (a mid-epoch one) is being written
    ('step', 11),  # SIGKILL between checkpoint writes
])
def test_a_sigkilled_run_resumes_from_its_last_complete_checkpoint(
    classifier_run, layouts, tmp_path, moment, count):
  workdir = tmp_path / 'run'
  result = run_interrupted(workdir, layouts, 'KILL', moment, count)
  assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
  complete = Checkpointer(checkpoint_dir(str(workdir)), read_only=True).all_steps()
  assert complete, 'no checkpoint completed before the kill'
  train_only(classifier_spec(epochs=2, checkpoint_every_steps=4), workdir, layouts)
  assert_same_params(workdir, classifier_run[0])


def test_a_checkpoint_the_disk_refuses_is_named_never_loaded_and_the_run_resumes(
    classifier_run, layouts, tmp_path):
  # After the second checkpoint (step 8) the OS refuses to let any file grow past 4 KiB,
  # so the third's arrays fail mid-write, in orbax's background thread.
  workdir = tmp_path / 'run'
  result = run_interrupted(workdir, layouts, 'FULL', 'save', 2)
  assert result.returncode == 1, result.stderr[-2000:]
  assert re.search(r'CheckpointWriteError: checkpoint step 12 could not be written in \S+ '
                   r'\(.*File too large.*\); it will not be loaded, the last complete '
                   r'checkpoint is step 8', result.stderr), result.stderr[-2000:]
  assert Checkpointer(checkpoint_dir(str(workdir)), read_only=True).all_steps() == [4, 8]
  train_only(classifier_spec(epochs=2, checkpoint_every_steps=4), workdir, layouts)
  assert_same_params(workdir, classifier_run[0])


def test_sigterm_saves_a_checkpoint_exits_143_and_the_run_resumes(classifier_run, layouts,
                                                                   tmp_path):
  workdir = tmp_path / 'run'
  result = run_interrupted(workdir, layouts, 'TERM', 'step', 7)
  assert result.returncode == 143, result.stderr[-2000:]
  assert 'stopped by SIGTERM at step 7; checkpoint saved' in result.stderr
  checkpoints = Checkpointer(checkpoint_dir(str(workdir)), read_only=True)
  assert checkpoints.latest_step() == 7
  train_only(classifier_spec(epochs=2, checkpoint_every_steps=4), workdir, layouts)
  assert_same_params(workdir, classifier_run[0])


def test_sigint_saves_a_checkpoint_exits_130_and_the_run_resumes(classifier_run, layouts,
                                                                 tmp_path):
  workdir = tmp_path / 'run'
  result = run_interrupted(workdir, layouts, 'INT', 'step', 7)
  assert result.returncode == 130, result.stderr[-2000:]
  assert 'stopped by SIGINT at step 7; checkpoint saved' in result.stderr
  assert Checkpointer(checkpoint_dir(str(workdir)), read_only=True).latest_step() == 7
  train_only(classifier_spec(epochs=2, checkpoint_every_steps=4), workdir, layouts)
  assert_same_params(workdir, classifier_run[0])


def test_a_second_sigint_stops_at_once_without_a_checkpoint(layouts, tmp_path):
  workdir = tmp_path / 'run'
  result = run_interrupted(workdir, layouts, 'INT2', 'step', 7)
  assert result.returncode == 130, result.stderr[-2000:]
  assert 'stopped by a second SIGINT' in result.stderr
  # Only the periodic checkpoint before the signals: nothing was saved at step 7.
  assert Checkpointer(checkpoint_dir(str(workdir)), read_only=True).all_steps() == [4]


class LossBlowsUpOnWhiteImages(ClassificationTask):
  """Cross-entropy, but NaN for an all-white input: a stand-in for a batch that diverges."""

  def loss(self, logits, batch):
    white = (batch['image'] >= 1.0).all(axis=(1, 2, 3))
    return super().loss(logits, batch) + jnp.where(white, jnp.nan, 0.0)


def poisoned_run(monkeypatch, layouts, config):
  """Whitens one training image that epoch 1 drops (the remainder) and epoch 2 uses.

  Returns the train position of that image and the step at which epoch 2 meets it.
  """
  real_prepare = experiment_data.prepare
  data = real_prepare(config, data_dir=layouts['data_dir'], manual_dir=layouts['ham10000'])
  steps = len(data.train_indices) // config.batch_size
  first = pipeline.train_order(data.train_indices, config.batch_size, epoch=0,
                               seed=config.seed)[:steps]
  second = pipeline.train_order(data.train_indices, config.batch_size, epoch=1,
                                seed=config.seed)[:steps]
  candidates = sorted(set(second.ravel()) - set(first.ravel()))
  assert candidates, 'every image is used in epoch 1: choose another seed'
  poisoned = candidates[0]
  step = steps + int(np.nonzero((second == poisoned).any(axis=1))[0][0])

  def prepare(*args, **kwargs):
    prepared = real_prepare(*args, **kwargs)
    prepared.train.images = np.array(prepared.train.images)  # the cache maps read-only
    prepared.train.images[poisoned] = 255
    return prepared

  monkeypatch.setattr(experiment_data, 'prepare', prepare)
  monkeypatch.setattr(build, 'task',
                      lambda spec, num_classes, *_: LossBlowsUpOnWhiteImages(num_classes))
  return poisoned, step, data.train.image_ids[poisoned]


def test_a_nonfinite_loss_stops_the_run_naming_step_and_batch_and_saves_nothing_after(
    layouts, tmp_path, monkeypatch):
  config = classifier_spec(epochs=2, augment='none', balance='none')
  poisoned, step, image_id = poisoned_run(monkeypatch, layouts, config)
  with pytest.raises(trainer.NonFiniteError, match=rf'^step {step} \(epoch 2\)') as error:
    train_only(config, tmp_path / 'run', layouts)
  assert str(poisoned) in str(error.value) and image_id in str(error.value)
  checkpoints = Checkpointer(checkpoint_dir(str(tmp_path / 'run')), read_only=True)
  # The only checkpoint is epoch 1's end.
  assert checkpoints.all_steps() == [checkpoints.latest_step()]
  assert checkpoints.latest_step() < step
  state = restore_run(str(tmp_path / 'run'), step='latest').state
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))


def test_skip_nonfinite_skips_and_counts_the_bad_update(layouts, tmp_path, monkeypatch):
  config = classifier_spec(epochs=2, augment='none', balance='none', skip_nonfinite=True)
  poisoned_run(monkeypatch, layouts, config)
  metrics = train(config, tmp_path / 'run', layouts)
  history = [json.loads(line)
             for line in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()]
  assert [record['skipped_nonfinite_steps'] for record in history] == [0, 1]
  assert np.isfinite(history[1]['train']['loss'])
  assert np.isfinite(metrics['loss'])


def test_a_disk_too_small_for_the_checkpoints_is_named_before_training(layouts, tmp_path,
                                                                      monkeypatch):
  real = trainer.shutil.disk_usage
  monkeypatch.setattr(trainer.shutil, 'disk_usage',
                      lambda path: real(path)._replace(free=100_000))
  with pytest.raises(ConfigError,
                     match=r'^--workdir: 0\.1 MiB free on the disk of .*checkpoints need about'):
    train_only(classifier_spec(epochs=1), tmp_path / 'run', layouts)
  assert not (tmp_path / 'run' / 'metrics.jsonl').exists()
