"""Orbax checkpoints of a run, behind one small class.

Each saved step holds three items: `state` (the TrainState arrays, one copy, on the host),
`config` (the run's description as JSON: model, resolution, class names, normalisation,
dataset and version, seed) and `progress` (epoch and step counters). Evaluation and
resumption need nothing but the directory.

Saves are asynchronous (training goes on while the files are written). The directory
keeps the latest step plus the best `keep_best` steps by a validation metric; steps saved
without metrics (every N steps within an epoch) are kept only while they are the latest.
Orbax writes each step to a temporary folder and renames it when complete, so a step cut
short by a crash or a failed write (a full disk) is never listed or loaded. A failed
asynchronous write surfaces at the next `save`, `wait` or `close` as a
CheckpointWriteError naming the step and the last complete one.

With several processes every one calls `save` and `restore` (the manager synchronises
them). The state is host numpy, identical in every process: orbax's numpy handler takes
it as replicated and only process 0 writes it, which is what replicated global jax.Arrays
would come to as well.
"""

import logging
import os
import sys
import time

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


class CheckpointDamagedError(FileNotFoundError):
  """No checkpoint asked for loads whole (its files are truncated, missing or overwritten)."""


def damage_report(directory: str, requested: int, loaded: int, damaged) -> str:
  """One line: which steps were damaged, which one was loaded instead, what it costs."""
  steps = ', '.join(f'{step} ({cause})' for step, cause in damaged)
  lost = f'; {requested - loaded} steps of work lost' if requested > loaded else ''
  return (f'checkpoint step(s) {steps} in {directory} are damaged; loaded step {loaded} '
          f'instead{lost}')


class CheckpointWriteError(RuntimeError):
  """A checkpoint could not be written (a full disk, an I/O error); nothing half-written
  is listed, and the run resumes from the last complete checkpoint."""


def _complete_steps(directory: str) -> list[int]:
  """Steps whose folders orbax finished (renamed from their temporary names)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def _short_cause(error: BaseException) -> str:
  """The end of an I/O error's message (tensorstore's carry a long spec after it)."""
  text = str(error).split(' [tensorstore_spec=')[0].strip()
  return text if len(text) <= 240 else '...' + text[-240:]


def _event_loop_closed(error) -> bool:
  return isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'


def _quiet_reads_after_the_event_loop_closed():
  """A restore that fails leaves tensorstore's other reads of that step in flight; when
  they finish, their callbacks meet orbax's closed event loop and Python prints each as an
  'Event loop is closed' traceback (through sys.unraisablehook or, from tensorstore's
  threads, sys.excepthook) that says nothing about the damage. Installed before the first
  read, as those reads race the caller's except clause; only that error is dropped."""
  if getattr(sys.unraisablehook, 'skinjax_quiet', False):
    return
  previous_unraisable, previous_except = sys.unraisablehook, sys.excepthook

  def unraisable_hook(unraisable):
    if not _event_loop_closed(unraisable.exc_value):
      previous_unraisable(unraisable)

  def except_hook(kind, error, traceback):
    if not _event_loop_closed(error):
      previous_except(kind, error, traceback)

  unraisable_hook.skinjax_quiet = True
  sys.unraisablehook, sys.excepthook = unraisable_hook, except_hook


class _DropFailedReadsOfADamagedStep(logging.Filter):
  """asyncio's 'Task exception was never retrieved' for the other reads of a step that
  failed to load (logged when their tasks are collected, after the except clause that
  reports the step): the damage report already names the step and its first error."""

  def filter(self, record):
    return not record.getMessage().startswith('Task exception was never retrieved')


def _quiet_failed_reads_of_a_damaged_step():
  asyncio_log = logging.getLogger('asyncio')
  if not any(isinstance(f, _DropFailedReadsOfADamagedStep) for f in asyncio_log.filters):
    asyncio_log.addFilter(_DropFailedReadsOfADamagedStep())


def _cause(error: BaseException) -> str:
  return f'{type(error).__name__}: {_short_cause(error)}'


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
    self._in_flight = None  # the step whose asynchronous write may still be running

  def _write_failed(self, step, error) -> CheckpointWriteError:
    complete = _complete_steps(self.directory)
    last = f'step {complete[-1]}' if complete else 'none'
    return CheckpointWriteError(
        f'checkpoint step {step} could not be written in {self.directory} '
        f'({type(error).__name__}: {_short_cause(error)}); it will not be loaded, the '
        f'last complete checkpoint is {last}; once the cause is mended (a full disk: make '
        'room), the same command resumes')

  def _finish_in_flight(self):
    """Waits for the write in flight; its failure becomes a CheckpointWriteError."""
    step, self._in_flight = self._in_flight, None
    try:
      self._manager.wait_until_finished()
    except Exception as error:  # orbax re-raises whatever its writer thread met
      raise self._write_failed(step, error) from error

  def save(self, step: int, state, *, config: dict, progress: dict,
           metrics: dict | None = None, force: bool = True) -> bool:
    """Saves host (not replicated) `state` at `step`; `metrics` rank it when given."""
    self._finish_in_flight()
    try:
      saved = self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config),
          progress=ocp.args.JsonSave(progress)),
          metrics=None if metrics is None else {k: float(v) for k, v in metrics.items()
                                                if isinstance(v, (int, float))},
          force=force)
    except OSError as error:  # the synchronous part: the temporary folder, small files
      raise self._write_failed(step, error) from error
    self._in_flight = step
    return saved

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

  def restore_intact(self, template_for, steps: list[int]):
    """The first of `steps` that loads whole: (state, config, progress, step, damaged).

    template_for(config, progress) gives the state template of a step. A step whose files
    are damaged (truncated, missing, overwritten) is skipped; damaged lists (step, cause)
    for each. CheckpointDamagedError when none loads.
    """
    _quiet_reads_after_the_event_loop_closed()
    damaged = []
    for step in steps:
      try:
        config, progress = self.read_config(step)
      except Exception as error:  # orbax and tensorstore raise many kinds for bad files
        _quiet_failed_reads_of_a_damaged_step()
        damaged.append((step, _cause(error)))
        continue
      template = template_for(config, progress)  # its refusals are the caller's to raise
      try:
        state, config, progress = self.restore(template, step)
      except Exception as error:
        _quiet_failed_reads_of_a_damaged_step()
        damaged.append((step, _cause(error)))
        continue
      return state, config, progress, step, damaged
    raise CheckpointDamagedError(
        f'no checkpoint in {self.directory} loads: '
        + '; '.join(f'step {step} is damaged ({cause})' for step, cause in damaged))

  def set_aside(self, step: int) -> str:
    """Renames a damaged step's folder out of the way (kept, never listed or loaded
    again, and the step can be written anew). Writers only: call holding the lock."""
    source = os.path.join(self.directory, str(step))
    target = f'{source}.damaged-{int(time.time())}'
    os.rename(source, target)
    self._manager.reload()
    return target

  def wait(self):
    """Blocks until pending asynchronous saves are on disk."""
    self._finish_in_flight()

  def close(self):
    try:
      self._finish_in_flight()
    except CheckpointWriteError:
      try:
        self._manager.close()
      except Exception:  # the same failure again: the first report is the one to keep
        pass
      raise
    self._manager.close()
