"""Orbax checkpoints round-trip the TrainState and the run config."""

import jax
import numpy as np
import pytest

from skinjax.models import create_model
from skinjax.train.checkpoint import Checkpointer
from skinjax.train.state import create_train_state, keras_adam


def test_save_then_restore_returns_the_same_state_and_config(tmp_path):
  model = create_model('unet_tiny')
  state = create_train_state(jax.random.key(0), model, (1, 32, 32, 3), keras_adam(1e-3))
  state = state.replace(step=state.step + 7)
  checkpointer = Checkpointer(tmp_path / 'ckpt')
  checkpointer.save(7, state, {'model': 'unet_tiny', 'image_size': 32})
  checkpointer.close()

  template = create_train_state(jax.random.key(1), model, (1, 32, 32, 3), keras_adam(1e-3))
  restored, config = Checkpointer(tmp_path / 'ckpt').restore(template)
  assert config == {'model': 'unet_tiny', 'image_size': 32}
  assert int(restored.step) == 7
  for a, b in zip(jax.tree.leaves((restored.params, restored.batch_stats, restored.opt_state)),
                  jax.tree.leaves((state.params, state.batch_stats, state.opt_state))):
    np.testing.assert_array_equal(a, b)


def test_restore_from_an_empty_directory_names_it(tmp_path):
  model = create_model('deepconvnet')
  template = create_train_state(jax.random.key(0), model, (1, 28, 28, 3), keras_adam(1e-3))
  with pytest.raises(FileNotFoundError, match='no checkpoint in .*empty'):
    Checkpointer(tmp_path / 'empty').restore(template)
