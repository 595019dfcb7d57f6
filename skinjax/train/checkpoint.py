"""Orbax checkpoints of a TrainState plus the run's config, behind one small class.

A checkpoint directory holds numbered steps; each step holds `state` (the TrainState
arrays) and `config` (JSON: model, resolution, class names, ...), so a later evaluation
needs only the directory.
"""

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores (TrainState, config) pairs under `directory`."""

  def __init__(self, directory: str, *, max_to_keep: int | None = 3):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))

  def save(self, step: int, state, config: dict):
    """Saves host or single-copy `state` (not replicated) and `config` at `step`."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config)))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, state_template, step: int | None = None):
    """Returns (state, config) at `step` (default: latest), shaped like `state_template`."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), config=ocp.args.JsonRestore()))
    return restored.state, restored.config

  def close(self):
    """Waits for pending writes and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
