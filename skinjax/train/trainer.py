"""train: the loop every experiment runs, from a run spec to checkpoints and logs.

Per epoch (skinjax.train.passes.train_epoch): shuffle the (balanced) train indices, run
the steps, read the train metrics once; then validate, log one line and checkpoint
asynchronously. A run restarted on the same workdir resumes from its latest checkpoint
(mid-epoch included) and ends with the parameters an uninterrupted run would have. At a
phase boundary (paper 2: frozen backbone, then fine-tuning) the model mode and the
optimizer change (skinjax.train.phases). Scoring the test split is the caller's
(skinjax.evaluation), with the history this returns.
"""

import contextlib
import dataclasses
import os
import shutil
import signal
import time

from absl import logging
import jax
import numpy as np

from skinjax.convert.converted_weights import load_converted
from skinjax.data import experiment_data, pipeline
from skinjax.train import build, multihost, passes, phases, transfer
from skinjax.train import spec as spec_lib
from skinjax.train import workdir as workdir_lib
from skinjax.train.checkpoint import Checkpointer, check_compatible, damage_report
from skinjax.train.lock import WorkdirLock, remove_unfinished_writes
from skinjax.train.metric_writer import MetricWriter, summary_line
from skinjax.train.parallel import make_parallel
from skinjax.train.preemption import PreemptionWatch
from skinjax.train.state import create_train_state


class NonFiniteError(RuntimeError):
  """A non-finite loss or gradient stopped the run; nothing was saved after the last good
  checkpoint."""


class Preempted(Exception):
  """SIGTERM or SIGINT stopped the run after a checkpoint was written; the same command
  resumes. exit_status: what a process ended by that signal reports (128 + its number)."""

  def __init__(self, step: int, checkpoint_dir: str, signal_number: int):
    name = signal.Signals(signal_number).name
    super().__init__(f'stopped by {name} at step {step}; checkpoint saved in '
                     f'{checkpoint_dir}; run the same command again to resume')
    self.step = step
    self.exit_status = 128 + signal_number


@dataclasses.dataclass
class TrainResult:
  workdir: str
  step: int  # the last step trained
  history: list[dict]  # every epoch record of the run, earlier sessions' included


@dataclasses.dataclass
class _Run:
  """What stays fixed for the whole run."""

  spec: spec_lib.RunSpec
  workdir: str
  data: experiment_data.ExperimentData
  model: object
  task: object
  description: dict
  checkpoints: Checkpointer
  writer: MetricWriter | None
  steps_per_epoch: int
  shards: int
  show_progress: bool
  preemption: PreemptionWatch
  nonfinite_seen: int = 0

  def close(self, *, quietly: bool = False):
    """The one shutdown: wait for the checkpoint in flight, close the logs. quietly: an
    error is already on its way out, so a second one (the same failed write) is dropped."""
    try:
      self.checkpoints.close()
    except Exception:
      if not quietly:
        raise
    finally:
      if self.writer is not None:
        self.writer.close()


@dataclasses.dataclass
class _Phase:
  """One phase's compiled pieces: model mode, optimizer, parallel steps, data feeds."""

  index: int
  model: object
  tx: object
  parallel: object
  train_feed: pipeline.InputPipeline
  validation_feed: pipeline.InputPipeline


def train(spec: spec_lib.RunSpec, workdir: str, *, data_dir: str,
          manual_dir: str | None = None, overlap_manual_dir: str | None = None,
          show_progress: bool = True) -> TrainResult:
  """Trains as `spec` says, checkpointing in `workdir`.

  manual_dir: the download of spec.dataset; overlap_manual_dir: of
  spec.exclude_overlap_with's dataset (each needed only when it is not built in data_dir).

  Raises Preempted after saving when SIGTERM or SIGINT arrives, NonFiniteError (saving nothing) on a
  non-finite loss or gradient unless spec.skip_nonfinite, ConfigError for a spec that
  cannot run here or on this data.
  """
  spec_lib.check_layout(spec, num_devices=jax.device_count(),
                        process_count=jax.process_count())
  # One writer per workdir; process 0 holds the lock for all (the others write only their
  # part of orbax's saves, which process 0 coordinates).
  primary = multihost.is_primary()
  with WorkdirLock(workdir) if primary else contextlib.nullcontext():
    if primary:
      workdir_lib.check_writable(workdir)
    return _train(spec, workdir, (data_dir, manual_dir, overlap_manual_dir), show_progress)


def _train(spec, workdir, sources, show_progress) -> TrainResult:
  with PreemptionWatch() as preemption, _opened(spec, workdir, sources, show_progress,
                                                preemption) as run:
    state, step, index = _init_or_resume(run)  # refuses a resume that changes the run
    if multihost.is_primary():  # holding the lock: no other writer can own these
      remove_unfinished_writes(run.checkpoints.directory, *workdir_lib.phase_dirs(workdir))
    phase = _enter_phase(run, index)
    # The latest and the best keep_best, plus one being written.
    _check_disk_space(run.checkpoints.directory, state, copies=spec.keep_best + 2)
    if multihost.is_primary():
      workdir_lib.write_description(workdir, run.description)
      if run.data.left_out is not None:
        workdir_lib.write_left_out(workdir, run.data.left_out)
    run.writer = MetricWriter(workdir, resume_epoch=step // run.steps_per_epoch)
    state = phase.parallel.replicate(state)
    for epoch in range(step // run.steps_per_epoch, spec.total_epochs):
      index = phases.phase_of_epoch(spec.phases, epoch)
      if index != phase.index:
        phase, state = _switch_phase(run, phase, state, index, epoch)
      offset = step - epoch * run.steps_per_epoch
      state, train_metrics, seconds = _run_epoch(run, phase, state, epoch, step)
      step = (epoch + 1) * run.steps_per_epoch
      _end_epoch(run, phase, state, epoch, step, train_metrics, seconds,
                 images=(run.steps_per_epoch - offset) * spec.batch_size)
  history = run.writer.history if run.writer is not None else []
  return TrainResult(workdir, step, history)


@contextlib.contextmanager
def _opened(spec, workdir, sources, show_progress, preemption):
  """The run's fixed pieces; closed once on the way out, whichever way it goes."""
  data_dir, manual_dir, overlap_manual_dir = sources
  data = multihost.primary_first(lambda: experiment_data.prepare(
      spec, data_dir=data_dir, manual_dir=manual_dir,
      overlap_manual_dir=overlap_manual_dir), 'skinjax_dataset_built')
  steps_per_epoch = len(data.train_indices) // spec.batch_size
  if steps_per_epoch == 0:
    raise spec_lib.ConfigError(f'--config.batch_size={spec.batch_size}: larger than the '
                               f'{len(data.train_indices)} training examples')
  classification = spec.task == 'classification'
  num_classes = len(data.class_names) if classification else 1
  description = workdir_lib.describe_run(
      spec, class_names=data.class_names if classification else None,
      dataset_full_name=data.dataset_full_name, data_dir=data_dir, left_out=data.left_out,
      class_weights=data.class_weights)
  checkpoints = Checkpointer(workdir_lib.checkpoint_dir(workdir), best_metric=spec.best_metric,
                             best_mode=spec.best_mode, keep_best=spec.keep_best)
  run = _Run(spec, workdir, data, build.model(spec, num_classes), build.task(spec, num_classes, data.class_weights),
             description, checkpoints, None, steps_per_epoch,
             spec.num_shards(jax.process_count()), show_progress, preemption)
  try:
    yield run
  except BaseException:
    run.close(quietly=True)
    raise
  run.close()


def _init_or_resume(run: _Run):
  """(host state, step, phase index): fresh at step 0, or the latest checkpoint's."""
  latest = run.checkpoints.latest_step()
  if latest is None:
    return _initial_state(run), 0, 0

  def template_for(saved, progress):
    """The state of the saved run, once its settings are checked against this one's."""
    where = f'--workdir={run.workdir}'
    check_compatible(saved, run.description, f'{where}: its checkpoint step {latest}')
    if saved.get('dataset_full_name') != run.description['dataset_full_name']:
      raise spec_lib.ConfigError(
          f'{where}: its run trained on {saved.get("dataset_full_name")}, this one reads '
          f'{run.description["dataset_full_name"]} (another build, whose splits may differ); '
          'give the --data_dir that holds the first, or start a new run in another --workdir')
    done = int(progress['step']) // run.steps_per_epoch
    changes = spec_lib.resume_changes(workdir_lib.spec_of(saved), run.spec, epochs_done=done)
    # The same --config.exclude_overlap_with (checked above) on another build of the other
    # dataset could leave out other images.
    if saved.get('left_out') != run.description['left_out']:
      raise spec_lib.ConfigError(
          f'{where}: its run left out {_left_out_count(saved.get("left_out"))} train images, '
          f'this one would leave out {_left_out_count(run.description["left_out"])} (another '
          'build of the other dataset?); give the --data_dir of the first run, or start a new '
          'run in another --workdir')
    for change in changes:
      logging.info('resuming with a change: %s', change)
    phase = run.spec.phases[int(progress['phase'])]
    return phases.state_template(phase, run.model, run.spec.image_size)[0]

  steps = sorted(run.checkpoints.all_steps(), reverse=True)
  state, _, progress, loaded, damaged = run.checkpoints.restore_intact(template_for, steps)
  if damaged:
    logging.warning('%s', damage_report(run.checkpoints.directory, latest, loaded, damaged))
    for bad, _ in damaged:
      logging.warning('set aside as %s', run.checkpoints.set_aside(bad))
  index, step = int(progress['phase']), int(progress['step'])
  if progress.get('data_shards', 1) != run.shards:
    logging.warning('the run saved in %s read its data in %s shard(s), this one reads it in '
                    '%d: the data order differs from here on (--config.data_shards keeps '
                    'it)', run.workdir, progress.get('data_shards', 1), run.shards)
  logging.info('resuming from step %d (epoch %d) in %s', step, step // run.steps_per_epoch,
               run.checkpoints.directory)
  return state, step, index


def _left_out_count(left_out: dict | None) -> str:
  return 'none' if left_out is None else f'{left_out["count"]} (of {left_out["dataset"]})'


def _initial_state(run: _Run):
  spec = run.spec
  model = phases.phase_model(spec.phases[0], run.model)
  tx = phases.optimizer(model, spec.phases[0].learning_rate)
  shape = (1, spec.image_size, spec.image_size, 3)
  state = create_train_state(jax.random.key(spec.seed), model, shape, tx)
  if spec.init_from:
    backbone, source = load_converted(spec.init_from)
    logging.info('initialising the backbone from %s (%s)', spec.init_from, source)
    variables = transfer.with_pretrained_backbone(
        {'params': state.params, 'batch_stats': state.batch_stats}, backbone)
    state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'],
                          opt_state=tx.init(variables['params']))
  elif hasattr(model, 'train_backbone'):
    logging.warning('no --config.init_from: the backbone trains from scratch, not from '
                    'ImageNet weights')
  return state


def _enter_phase(run: _Run, index: int) -> _Phase:
  phase = run.spec.phases[index]
  model = phases.phase_model(phase, run.model)
  tx = phases.optimizer(model, phase.learning_rate)
  parallel = make_parallel(run.spec.parallel, model, run.task,
                           preprocess=build.preprocess(run.spec),
                           skip_nonfinite=run.spec.skip_nonfinite)
  feeds = [pipeline.InputPipeline(arrays, parallel, placement=run.spec.data_placement)
           for arrays in (run.data.train, run.data.validation)]
  return _Phase(index, model, tx, parallel, *feeds)


def _switch_phase(run: _Run, phase: _Phase, state, index: int, epoch: int):
  """The next phase: its model mode and a fresh optimizer, the weights carried over."""
  host_state = phase.parallel.fetch(state)
  phase = _enter_phase(run, index)
  state = phase.parallel.replicate(host_state.replace(
      tx=phase.tx, opt_state=phase.tx.init(host_state.params)))
  logging.info('phase %d (%s) from epoch %d', index + 1, run.spec.phases[index].name, epoch)
  return phase, state


def _progress(run: _Run, phase: _Phase, step: int, epoch: int) -> dict:
  return {'epoch': epoch, 'step': step, 'phase': phase.index, 'data_shards': run.shards}


def _run_epoch(run: _Run, phase: _Phase, state, epoch: int, step: int):
  """The epoch's remaining steps from `step`; mid-epoch checkpoints and pre-emption."""
  spec = run.spec
  offset = step - epoch * run.steps_per_epoch
  order = pipeline.train_order(run.data.train_indices, spec.batch_size, epoch=epoch,
                               seed=spec.seed, num_shards=run.shards)

  def after_step(state, done):
    current = step + done
    if current % run.steps_per_epoch == 0:
      return  # the epoch's end saves (and answers a pre-emption)
    if run.preemption.requested or (spec.checkpoint_every_steps
                                    and current % spec.checkpoint_every_steps == 0):
      _check_nonfinite(run, phase, state)
      run.checkpoints.save(current, phase.parallel.fetch(state), config=run.description,
                           progress=_progress(run, phase, current, epoch))
      if run.preemption.requested:
        run.checkpoints.wait()
        raise Preempted(current, run.checkpoints.directory, run.preemption.signal_number)

  state, metrics, seconds = passes.train_epoch(
      phase.parallel, phase.train_feed, state, order[offset:], jax.random.key(spec.seed + 1),
      after_step=after_step, description=f'epoch {epoch + 1}/{spec.total_epochs}',
      show_progress=run.show_progress)
  _check_nonfinite(run, phase, state)
  return state, metrics, seconds


def _end_epoch(run: _Run, phase: _Phase, state, epoch: int, step: int, train_metrics: dict,
               seconds: float, images: int):
  """Validate, log, checkpoint; keep a phase's final weights; answer a pre-emption."""
  spec = run.spec
  start = time.perf_counter()
  validation_metrics, _ = passes.eval_pass(
      phase.parallel, state, phase.validation_feed,
      pipeline.eval_order(len(run.data.validation), spec.eval_batch_size, run.shards))
  # seconds: the training steps alone; validation_seconds: the pass above (metrics read).
  record = {'epoch': epoch, 'step': step, 'phase': spec.phases[phase.index].name,
            'train': train_metrics, 'validation': validation_metrics, 'seconds': seconds,
            'images_per_second': images / seconds,
            'validation_seconds': time.perf_counter() - start}
  if spec.skip_nonfinite:
    record['skipped_nonfinite_steps'] = run.nonfinite_seen
  run.writer.write(record)
  logging.info('%s', summary_line(epoch, spec.total_epochs, record))
  host_state = phase.parallel.fetch(state)
  progress = _progress(run, phase, step, epoch + 1)
  run.checkpoints.save(step, host_state, config=run.description, progress=progress,
                       metrics=validation_metrics)
  if phases.is_last_epoch_of_phase(spec.phases, epoch):  # kept for good
    # Two managers saving at once across processes would meet in orbax's barriers
    # (same names; the coordination service refuses the second): one at a time.
    run.checkpoints.wait()
    kept = Checkpointer(workdir_lib.phase_dir(run.workdir, spec.phases[phase.index].name),
                        keep_best=0)
    kept.save(step, host_state, config=run.description, progress=progress)
    kept.close()
  if run.preemption.requested and epoch + 1 < spec.total_epochs:
    run.checkpoints.wait()
    raise Preempted(step, run.checkpoints.directory, run.preemption.signal_number)


def _check_nonfinite(run: _Run, phase: _Phase, state):
  """Reads the non-finite step count (a host sync, so only before checkpoints).

  Without spec.skip_nonfinite, the first non-finite step stops the run with its step and
  batch.
  """
  count, first = (int(x) for x in phase.parallel.fetch((state.nonfinite_steps,
                                                         state.first_nonfinite_step)))
  if count > run.nonfinite_seen and run.spec.skip_nonfinite:
    logging.warning('skipped %d update(s) with a non-finite loss or gradient so far (the '
                    'first at step %d)', count, first)
  elif count and not run.spec.skip_nonfinite:
    epoch, position = divmod(first, run.steps_per_epoch)
    indices = pipeline.train_order(run.data.train_indices, run.spec.batch_size, epoch=epoch,
                                   seed=run.spec.seed, num_shards=run.shards)[position]
    run.checkpoints.wait()
    raise NonFiniteError(
        f'step {first} (epoch {epoch + 1}): the loss or a gradient is not finite for the '
        f'batch of training examples {indices.tolist()} (image ids '
        f'{run.data.train.image_ids[indices].tolist()}); stopped without saving, the last '
        f'good checkpoint is step {run.checkpoints.latest_step()} in '
        f'{run.checkpoints.directory}. --config.skip_nonfinite skips such updates instead')
  run.nonfinite_seen = count


def _check_disk_space(directory: str, state, copies: int):
  """Refuses to start when the disk cannot hold `copies` checkpoints of `state`.

  Where the disk fills up later anyway, orbax's temporary directory is never renamed into
  a step, so no half-written checkpoint is ever listed or loaded.
  """
  needed = copies * sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(state))
  os.makedirs(directory, exist_ok=True)
  free = shutil.disk_usage(directory).free
  if free < needed:
    raise spec_lib.ConfigError(
        f'--workdir: {free / 2**20:.1f} MiB free on the disk of {directory}; this run\'s '
        f'checkpoints need about {needed / 2**20:.1f} MiB ({copies} copies of the state)')
