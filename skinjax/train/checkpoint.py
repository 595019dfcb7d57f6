"""Orbax checkpoints of a run, behind one small class.

Each saved step holds three items: `state` (the TrainState arrays, one copy, on the host),
`config` (the run's description as JSON: model, resolution, class names, normalisation,
dataset and version, seed) and `progress` (epoch and step counters). Evaluation and
resumption need nothing but the directory.

Saves are asynchronous (training goes on while the files are written). The directory
keeps the latest step plus the best `keep_best` steps by a validation metric; steps saved
without metrics (every N steps within an epoch) are kept only while they are the latest.
Orbax writes each step to a temporary folder and renames it when complete, so a step cut
short by a crash is never listed or loaded.

With several processes every one calls `save` and `restore` (the manager synchronises
them). The state is host numpy, identical in every process: orbax's numpy handler takes
it as replicated and only process 0 writes it, which is what replicated global jax.Arrays
would come to as well.
"""

import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

# The run description keys that must agree before a checkpoint's weights are reused.
IDENTITY_KEYS = ('model', 'num_classes', 'class_names', 'image_size')


class CheckpointMismatchError(ValueError):
  """A checkpoint describes another model, class set or resolution than the run."""


def describe(config: dict) -> str:
  """A one-line description of what a run config builds, for error messages."""
  classes = config.get('class_names')
  return (f"model {config.get('model')!r} with {config.get('num_classes')} classes"
          + (f" ({', '.join(classes)})" if classes else '')
          + f" at {config.get('image_size')}x{config.get('image_size')}"
          + f", dataset {config.get('dataset_full_name', config.get('dataset'))}")


def check_compatible(saved: dict, expected: dict, where: str):
  """Raises CheckpointMismatchError naming both descriptions if they disagree."""
  differences = [key for key in IDENTITY_KEYS if saved.get(key) != expected.get(key)]
  if differences:
    raise CheckpointMismatchError(
        f'{where} holds {describe(saved)}; this run builds {describe(expected)} '
        f'(they differ in {", ".join(differences)})')


class Checkpointer:
  """Saves and restores (TrainState, config, progress) under `directory`.

  Args:
    directory: the checkpoint folder (created if missing).
    best_metric: validation metric that ranks checkpoints (e.g. 'accuracy'); None keeps
      only the latest `keep_best + 1`.
    best_mode: 'max' or 'min'.
    keep_best: how many best checkpoints to keep besides the latest.
    async_save: write in a background thread (True) or before `save` returns.
  """

  def __init__(self, directory: str, *, best_metric: str | None = None, best_mode: str = 'max',
               keep_best: int = 3, async_save: bool = True, read_only: bool = False):
    self.directory = os.path.abspath(os.fspath(directory))
    self.best_metric = best_metric
    policies = [checkpoint_managers.LatestN(n=1 if best_metric else keep_best + 1)]
    best_fn = None
    if best_metric:
      best_fn = lambda metrics: metrics[best_metric]  # noqa: E731
      policies.append(checkpoint_managers.BestN(
          get_metric_fn=best_fn, reverse=best_mode == 'min', n=keep_best,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        best_fn=best_fn, best_mode=best_mode, read_only=read_only,
        enable_async_checkpointing=async_save,
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies))
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state, *, config: dict, progress: dict,
           metrics: dict | None = None, force: bool = True) -> bool:
    """Saves host (not replicated) `state` at `step`; `metrics` rank it when given."""
    return self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config),
        progress=ocp.args.JsonSave(progress)),
        metrics=None if metrics is None else {k: float(v) for k, v in metrics.items()
                                              if isinstance(v, (int, float))},
        force=force)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The best step by `best_metric` (the latest one without a metric)."""
    return self._manager.best_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def _step(self, step):
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    return step

  def read_config(self, step: int | None = None) -> tuple[dict, dict]:
    """(config, progress) saved at `step` (default: latest), without loading the weights."""
    step = self._step(step)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore(), progress=ocp.args.JsonRestore()))
    return restored.config, restored.progress

  def restore(self, state_template, step: int | None = None, *, expected_config: dict | None = None):
    """Returns (state, config, progress) at `step` (default: latest).

    state_template: a TrainState (or its abstract shapes) of the same structure.
    expected_config: when given, refuse a checkpoint that describes another model,
      class set or resolution (CheckpointMismatchError with both descriptions).
    """
    step = self._step(step)
    if expected_config is not None:
      saved, _ = self.read_config(step)
      check_compatible(saved, expected_config, f'checkpoint {self.directory} step {step}')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), config=ocp.args.JsonRestore(),
        progress=ocp.args.JsonRestore()))
    return restored.state, restored.config, restored.progress

  def wait(self):
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
