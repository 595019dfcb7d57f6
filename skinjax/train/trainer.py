"""train_and_evaluate: the loop every experiment runs, from config to report.

Per epoch: shuffle the (balanced) train indices, run the steps with device-resident data,
read the train metrics once, validate, log one line, checkpoint asynchronously. A run
restarted with the same workdir resumes from its latest checkpoint (mid-epoch included)
and ends with the parameters an uninterrupted run would have. Multi-phase runs (paper 2:
frozen backbone, then fine-tuning) switch model mode and optimizer at phase boundaries.
"""

import dataclasses
import math
import os
import shutil
import time

from absl import logging
import jax
import numpy as np
import tqdm

from skinjax import report as report_lib
from skinjax.data import experiment_data, pipeline
from skinjax.train import evaluate as evaluate_lib, experiment, inference, multihost, run_state
from skinjax.train.checkpoint import Checkpointer, check_compatible
from skinjax.train.metric_writer import MetricWriter, summary_line
from skinjax.train.parallel import make_parallel
from skinjax.train.preemption import PreemptionWatch
from skinjax.train.state import create_train_state


class NonFiniteError(RuntimeError):
  """A non-finite loss or gradient stopped the run; nothing was saved after the last good
  checkpoint."""


class Preempted(Exception):
  """SIGTERM stopped the run after a checkpoint was written; the same command resumes."""

  def __init__(self, step: int, checkpoint_dir: str):
    super().__init__(f'stopped by SIGTERM at step {step}; checkpoint saved in '
                     f'{checkpoint_dir}; run the same command again to resume')
    self.step = step


@dataclasses.dataclass
class _Phase:
  """One phase's compiled pieces: model mode, optimizer, parallel steps, data feeds."""

  index: int
  model: object
  tx: object
  parallel: object
  train_feed: pipeline.InputPipeline
  validation_feed: pipeline.InputPipeline


def _enter_phase(config, index, model, task, preprocess, data) -> _Phase:
  phase_model = run_state.phase_model(config, model, index)
  tx = experiment.build_optimizer(phase_model, config.phases[index].learning_rate)
  parallel = make_parallel(config.parallel, phase_model, task, preprocess=preprocess,
                           skip_nonfinite=config.get('skip_nonfinite', False))
  feeds = [pipeline.InputPipeline(arrays, parallel, placement=config.data_placement)
           for arrays in (data.train, data.validation)]
  return _Phase(index, phase_model, tx, parallel, *feeds)


def _initial_state(config, model, tx):
  size = config.image_size
  state = create_train_state(jax.random.key(config.seed), model, (1, size, size, 3), tx)
  if config.get('init_from'):
    from skinjax.convert import keras_efficientnet_v2
    from skinjax.train import transfer
    backbone, source = keras_efficientnet_v2.load_converted(config.init_from)
    logging.info('initialising the backbone from %s (%s)', config.init_from, source)
    variables = transfer.with_pretrained_backbone(
        {'params': state.params, 'batch_stats': state.batch_stats}, backbone)
    state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'],
                          opt_state=tx.init(variables['params']))
  elif hasattr(model, 'train_backbone'):
    logging.warning('no --config.init_from: the backbone trains from scratch, not from '
                    'ImageNet weights')
  return state


def _check_disk_space(directory: str, state, copies: int):
  """Refuses to start when the disk cannot hold `copies` checkpoints of `state`.

  Where the disk fills up later anyway, orbax's temporary directory is never renamed into
  a step, so no half-written checkpoint is ever listed or loaded.
  """
  needed = copies * sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(state))
  os.makedirs(directory, exist_ok=True)
  free = shutil.disk_usage(directory).free
  if free < needed:
    raise experiment.ConfigError(
        f'--workdir: {free / 2**20:.1f} MiB free on the disk of {directory}; this run\'s '
        f'checkpoints need about {needed / 2**20:.1f} MiB ({copies} copies of the state)')


def _nonfinite_check(config, parallel, state, data, steps_per_epoch, checkpoints,
                     seen: int) -> int:
  """Reads the step's non-finite count (a host sync, so only before checkpoints).

  Without config.skip_nonfinite, the first non-finite step stops the run with its step and
  batch. Returns the count, for the next call.
  """
  count, first = (int(x) for x in parallel.fetch((state.nonfinite_steps,
                                                   state.first_nonfinite_step)))
  if count > seen and config.get('skip_nonfinite', False):
    logging.warning('skipped %d update(s) with a non-finite loss or gradient so far (the '
                    'first at step %d)', count, first)
  elif count:
    epoch, position = divmod(first, steps_per_epoch)
    indices = pipeline.train_order(data.train_indices, config.batch_size, epoch=epoch,
                                   seed=config.seed,
                                   num_shards=experiment.data_shards(config))[position]
    checkpoints.wait()
    raise NonFiniteError(
        f'step {first} (epoch {epoch + 1}): the loss or a gradient is not finite for the '
        f'batch of training examples {indices.tolist()} (image ids '
        f'{data.train.image_ids[indices].tolist()}); stopped without saving, the last good '
        f'checkpoint is step {checkpoints.latest_step()} in {checkpoints.directory}. '
        '--skip_nonfinite skips such updates instead')
  return count


def train_and_evaluate(config, workdir: str, *, data_dir: str, manual_dir: str | None = None,
                       show_progress: bool = True) -> dict:
  """Trains as `config` says, checkpoints in `workdir`, and reports on the test split.

  Returns the test metrics of the best checkpoint. Raises Preempted after saving when
  SIGTERM arrives, and NonFiniteError (saving nothing) on a non-finite loss or gradient
  unless config.skip_nonfinite.
  """
  with PreemptionWatch() as preemption:
    return _train_and_evaluate(config, workdir, data_dir=data_dir, manual_dir=manual_dir,
                               show_progress=show_progress, preemption=preemption)


def _check_processes(parallel: str, data_placement: str):
  """Refuses what several processes cannot do, before anything is built."""
  if jax.process_count() == 1:
    return
  if parallel != 'jit':
    raise experiment.ConfigError(f'--parallel={parallel}: runs in one process only; '
                                 f'with {jax.process_count()} processes use --parallel=jit')
  if data_placement == 'device':
    raise experiment.ConfigError('--config.data_placement=device: a run over several '
                                 'processes streams each process\'s rows; use auto or stream')


def _prepare_data(config, data_dir, manual_dir):
  """The run's arrays; with several processes, process 0 builds the dataset first (the
  others would race it on a shared disk) and the others then read what it built."""
  if not multihost.is_primary():
    multihost.barrier('skinjax_dataset_built')
  data = experiment_data.prepare(config, data_dir=data_dir, manual_dir=manual_dir)
  if multihost.is_primary():
    multihost.barrier('skinjax_dataset_built')
  return data


def _train_and_evaluate(config, workdir, *, data_dir, manual_dir, show_progress, preemption):
  # The global batch spreads over every process's devices; process 0 alone probes the
  # workdir (the others' probes of the same file would race it).
  experiment.check(config, workdir=workdir if multihost.is_primary() else None,
                   num_devices=jax.device_count())
  _check_processes(config.parallel, config.data_placement)
  data = _prepare_data(config, data_dir, manual_dir)
  classification = config.task == 'classification'
  num_classes = len(data.class_names) if classification else 1
  description = run_state.description(
      config, num_classes=num_classes, class_names=data.class_names if classification else None,
      dataset_full_name=data.dataset_full_name, data_dir=data_dir)
  model = experiment.build_model(config, num_classes)
  task = experiment.build_task(config, num_classes)
  norm = config.normalization
  preprocess = pipeline.Preprocess(augment=experiment.AUGMENTATIONS[config.augment],
                                   mean=tuple(norm.mean), std=tuple(norm.std))
  checkpoints = Checkpointer(run_state.checkpoint_dir(workdir), best_metric=config.best_metric,
                             best_mode=config.best_mode, keep_best=config.keep_best)
  steps_per_epoch = len(data.train_indices) // config.batch_size
  if steps_per_epoch == 0:
    raise experiment.ConfigError(
        f'--config.batch_size={config.batch_size}: larger than the {len(data.train_indices)} '
        'training examples')
  shards = experiment.data_shards(config)
  bounds = experiment.phase_boundaries(config)
  total_epochs = bounds[-1][1]

  latest = checkpoints.latest_step()
  if latest is None:
    phase = _enter_phase(config, 0, model, task, preprocess, data)
    state, step = _initial_state(config, phase.model, phase.tx), 0
  else:
    saved, progress = checkpoints.read_config(latest)
    check_compatible(saved, description, f'--workdir={workdir}: its checkpoint step {latest}')
    template, _ = run_state.state_template(config, model, progress['phase'])
    state, _, _ = checkpoints.restore(template, latest)
    phase = _enter_phase(config, progress['phase'], model, task, preprocess, data)
    step = int(progress['step'])
    if progress.get('data_shards', 1) != shards:
      logging.warning('the run saved in %s read its data in %s shard(s), this one reads it in '
                      '%d: the data order differs from here on (--config.data_shards keeps '
                      'it)', workdir, progress.get('data_shards', 1), shards)
    logging.info('resuming from step %d (epoch %d) in %s', step, step // steps_per_epoch,
                 checkpoints.directory)
  # The latest and the best keep_best, plus one being written.
  _check_disk_space(checkpoints.directory, state, copies=config.keep_best + 2)
  run_state.write_config(workdir, description)
  state = phase.parallel.replicate(state)
  writer = MetricWriter(workdir, resume_epoch=step // steps_per_epoch)
  rng = jax.random.key(config.seed + 1)
  nonfinite = 0

  for epoch in range(step // steps_per_epoch, total_epochs):
    index = experiment.phase_of_epoch(config, epoch)
    if index != phase.index:  # a new phase: new model mode and a fresh optimizer
      host_state = phase.parallel.fetch(state)
      phase = _enter_phase(config, index, model, task, preprocess, data)
      state = phase.parallel.replicate(host_state.replace(
          tx=phase.tx, opt_state=phase.tx.init(host_state.params)))
      logging.info('phase %d (%s) from epoch %d', index + 1, config.phases[index].name, epoch)
    order = pipeline.train_order(data.train_indices, config.batch_size, epoch=epoch,
                                 seed=config.seed, num_shards=shards)
    offset = step - epoch * steps_per_epoch
    metrics = phase.parallel.replicate(task.empty_metrics())
    start = time.perf_counter()
    bar = tqdm.tqdm(total=steps_per_epoch, initial=offset, unit='step', leave=False,
                    desc=f'epoch {epoch + 1}/{total_epochs}',
                    disable=not show_progress or jax.process_index() != 0)
    for batch in phase.train_feed.batches(order[offset:]):
      state, metrics = phase.parallel.train_step(state, metrics, batch, rng,
                                                 phase.train_feed.data)
      step += 1
      bar.update()
      rate = (bar.n - offset) * config.batch_size / (time.perf_counter() - start)
      bar.set_postfix_str(f'{rate:.0f} images/s', refresh=False)
      if not step % steps_per_epoch:
        continue  # the epoch's end saves (and answers a pre-emption) below
      if preemption.requested or (config.checkpoint_every_steps
                                  and step % config.checkpoint_every_steps == 0):
        nonfinite = _nonfinite_check(config, phase.parallel, state, data, steps_per_epoch,
                                     checkpoints, nonfinite)
        checkpoints.save(step, phase.parallel.fetch(state), config=description,
                         progress={'epoch': epoch, 'step': step, 'phase': index,
                                   'data_shards': shards})
        if preemption.requested:
          bar.close()
          checkpoints.close()
          writer.close()
          raise Preempted(step, checkpoints.directory)
    nonfinite = _nonfinite_check(config, phase.parallel, state, data, steps_per_epoch,
                                 checkpoints, nonfinite)
    train_metrics = phase.parallel.fetch(metrics).compute()  # the epoch's one host read
    seconds = time.perf_counter() - start
    bar.close()
    validation_metrics = evaluate_lib.evaluate(
        phase.parallel, state, task,
        phase.validation_feed.batches(pipeline.eval_order(
            len(data.validation), config.eval_batch_size, shards)),
        data=phase.validation_feed.data)
    record = {'epoch': epoch, 'step': step, 'phase': config.phases[index].name,
              'train': train_metrics, 'validation': validation_metrics, 'seconds': seconds,
              'images_per_second': (steps_per_epoch - offset) * config.batch_size / seconds}
    if config.get('skip_nonfinite', False):
      record['skipped_nonfinite_steps'] = nonfinite
    writer.write(record)
    logging.info('%s', summary_line(epoch, total_epochs, record))
    host_state = phase.parallel.fetch(state)
    progress = {'epoch': epoch + 1, 'step': step, 'phase': index, 'data_shards': shards}
    checkpoints.save(step, host_state, config=description, progress=progress,
                     metrics=validation_metrics)
    if epoch + 1 == bounds[index][1]:  # each phase's final weights are kept for good
      phase_dir = os.path.join(workdir, 'phases', config.phases[index].name)
      # Two managers saving at once across processes would meet in orbax's barriers
      # (same names; the coordination service refuses the second): one at a time.
      checkpoints.wait()
      phase_checkpoints = Checkpointer(phase_dir, keep_best=0)
      phase_checkpoints.save(step, host_state, config=description, progress=progress)
      phase_checkpoints.close()
    if preemption.requested and epoch + 1 < total_epochs:
      checkpoints.close()
      writer.close()
      raise Preempted(step, checkpoints.directory)
  writer.close()
  checkpoints.close()
  return evaluate_workdir(workdir, split='test', data_dir=data_dir, manual_dir=manual_dir)


def evaluate_workdir(workdir: str, *, split: str = 'test', data_dir: str | None = None,
                     manual_dir: str | None = None, step='best', batch_size=None,
                     parallel: str | None = None) -> dict:
  """Restores the run in `workdir` (best checkpoint), evaluates `split` on the devices at
  hand, and writes the report under <workdir>/report/<split>/ (process 0 only). Returns
  its metrics, global over all processes.

  parallel: 'pmap' or 'jit' (default: the mode the run trained with).
  """
  run = run_state.restore_run(workdir, step=step)
  config = run.config
  parallel = parallel or config.parallel
  _check_processes(parallel, config.data_placement)
  data = _prepare_data(config, data_dir or run.description['data_dir'], manual_dir)
  arrays = {'train': data.train, 'validation': data.validation, 'test': data.test}
  if split not in arrays:
    raise ValueError(f'--split={split!r}: expected one of {", ".join(arrays)}')
  norm = config.normalization
  preprocess = pipeline.Preprocess(mean=tuple(norm.mean), std=tuple(norm.std))
  parallel = make_parallel(parallel, run.model, run.task, preprocess=preprocess)
  # Any device and process count: one data shard per process (whatever the run trained
  # with), the batch rounded up to a multiple of the devices and the shards.
  shards = jax.process_count()
  multiple = math.lcm(parallel.num_devices, shards)
  size = -(-(batch_size or config.eval_batch_size) // multiple) * multiple
  feed = pipeline.InputPipeline(arrays[split], parallel, placement=config.data_placement)
  state = parallel.replicate(run.state)
  order = pipeline.eval_order(len(arrays[split]), size, shards)
  metrics = evaluate_lib.evaluate(parallel, state, run.task, feed.batches(order),
                                  data=feed.data)
  logits = inference.predict_split(parallel, state, feed, order)  # in every process
  if not multihost.is_primary():
    return metrics
  gradcam = (inference.gradcam_samples(run, arrays[split])
             if config.task == 'classification' and len(arrays[split]) else None)
  report_lib.write_report(os.path.join(workdir, 'report', split), run=run, split=split,
                          metrics=metrics, arrays=arrays[split], logits=logits,
                          workdir=workdir, gradcam=gradcam)
  return metrics
