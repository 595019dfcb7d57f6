"""Orbax checkpoints: round trip, latest plus best-K retention, refusal of another model."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from skinjax.models import create_model
from skinjax.train.checkpoint import CheckpointMismatchError, Checkpointer, check_compatible
from skinjax.train.state import create_train_state, keras_adam

CONFIG = {'model': 'unet_tiny', 'num_classes': 1, 'class_names': None, 'image_size': 32,
          'dataset_full_name': 'ph2/1.0.0'}


@pytest.fixture(scope='module')
def unet_state():
  model = create_model('unet_tiny')
  return jax.device_get(create_train_state(jax.random.key(0), model, (1, 32, 32, 3),
                                           keras_adam(1e-3)))


def test_save_then_restore_returns_the_same_state_config_and_progress(unet_state, tmp_path):
  state = unet_state.replace(step=np.int32(7))
  checkpointer = Checkpointer(tmp_path / 'ckpt')
  checkpointer.save(7, state, config=CONFIG, progress={'epoch': 1, 'step': 7, 'phase': 0})
  checkpointer.close()
  restored, config, progress = Checkpointer(tmp_path / 'ckpt').restore(unet_state)
  assert config == CONFIG and progress == {'epoch': 1, 'step': 7, 'phase': 0}
  assert int(restored.step) == 7
  for a, b in zip(jax.tree.leaves((restored.params, restored.batch_stats, restored.opt_state)),
                  jax.tree.leaves((state.params, state.batch_stats, state.opt_state))):
    np.testing.assert_array_equal(a, b)


def test_the_latest_and_the_best_k_are_kept(unet_state, tmp_path):
  checkpointer = Checkpointer(tmp_path / 'ckpt', best_metric='dice', keep_best=2)
  for epoch, dice in enumerate([0.5, 0.8, 0.6, 0.4, 0.7], start=1):
    checkpointer.save(10 * epoch - 5, unet_state, config=CONFIG, progress={})  # mid-epoch
    checkpointer.save(10 * epoch, unet_state, config=CONFIG, progress={},
                      metrics={'dice': dice})
  checkpointer.wait()
  # Best two: 0.8 (step 20) and 0.7 (step 50, also the latest); no mid-epoch step is left.
  assert checkpointer.all_steps() == [20, 50]
  assert checkpointer.best_step() == 20 and checkpointer.latest_step() == 50
  checkpointer.close()


def test_a_checkpoint_of_another_model_or_class_set_is_refused_with_both(unet_state, tmp_path):
  checkpointer = Checkpointer(tmp_path / 'ckpt')
  checkpointer.save(1, unet_state, config=CONFIG, progress={})
  checkpointer.wait()
  other = {**CONFIG, 'model': 'unet', 'image_size': 224}
  with pytest.raises(CheckpointMismatchError,
                     match=r"step 1 holds model 'unet_tiny' with 1 classes at 32x32.*this run "
                           r"builds model 'unet' with 1 classes at 224x224.*differ in model, "
                           r'image_size'):
    checkpointer.restore(unet_state, expected_config=other)
  checkpointer.close()


def test_class_names_must_agree_too():
  saved = {'model': 'deepconvnet', 'num_classes': 2, 'class_names': ['benign', 'malignant'],
           'image_size': 28}
  with pytest.raises(CheckpointMismatchError, match='differ in num_classes, class_names'):
    check_compatible(saved, {**saved, 'num_classes': 3, 'class_names': ['a', 'b', 'c']}, 'here')


def test_restore_from_an_empty_directory_names_it(unet_state, tmp_path):
  with pytest.raises(FileNotFoundError, match='no checkpoint in .*empty'):
    Checkpointer(tmp_path / 'empty').restore(unet_state)


QUIET_AFTER_RESTORE = '''
import logging, pathlib, sys
import numpy as np
from absl import logging as absl_logging
from skinjax.train.checkpoint import Checkpointer
absl_logging.use_absl_handler()
asyncio_log = logging.getLogger('asyncio')
folder, damage = pathlib.Path(sys.argv[1]), sys.argv[2] == 'damaged'
state = {'w': np.arange(200_000, dtype=np.float32)}
writer = Checkpointer(folder)
writer.save(1, state, config={}, progress={})
writer.close()
if damage:  # the array file cut in half, as a full disk or a killed copy leaves it
  victim = max((p for p in (folder / '1' / 'state').rglob('*') if p.is_file()),
               key=lambda p: p.stat().st_size)
  victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])
try:
  Checkpointer(folder, read_only=True).restore_intact(lambda config, progress: state, [1])
  print('loaded')
except FileNotFoundError as error:
  print('damaged:', str(error)[:60])
closed = RuntimeError('Event loop is closed')
sys.excepthook(RuntimeError, closed, None)
class RaisesWhenCollected:
  def __init__(self, error):
    self.error = error
  def __del__(self):
    raise self.error
RaisesWhenCollected(closed)  # collected at once: sys.unraisablehook
asyncio_log.error('Task exception was never retrieved: a second read')
sys.excepthook(ValueError, ValueError('a real error'), None)
RaisesWhenCollected(ValueError('a real unraisable error'))
asyncio_log.error('another asyncio error')
'''


@pytest.mark.parametrize('damage', ['intact', 'damaged'])
def test_the_reads_left_over_by_a_damaged_step_print_nothing_and_other_errors_still_do(
    tmp_path, damage):
  # tensorstore's leftover reads of a step that failed to load print through all three
  # routes (seen in CI as a traceback after the launcher's one-line error); asyncio's
  # report of failed tasks is dropped only once a step was found damaged.
  result = subprocess.run([sys.executable, '-c', QUIET_AFTER_RESTORE, str(tmp_path / 'ckpt'),
                           damage], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('loaded' if damage == 'intact' else 'damaged: no checkpoint')
  assert 'Event loop is closed' not in result.stderr
  assert ('never retrieved' in result.stderr) == (damage == 'intact')
  assert 'ValueError: a real error' in result.stderr
  assert 'ValueError: a real unraisable error' in result.stderr
  assert 'another asyncio error' in result.stderr
