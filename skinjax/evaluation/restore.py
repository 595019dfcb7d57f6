"""A run restored from its workdir alone, at its best, latest or a numbered checkpoint, on
whatever devices this process has (any count, either parallel mode)."""

import dataclasses

from absl import logging

from skinjax.train import build, phases
from skinjax.train import workdir as workdir_lib
from skinjax.train.checkpoint import CheckpointDamagedError, Checkpointer, damage_report
from skinjax.train.spec import RunSpec


@dataclasses.dataclass
class RestoredRun:
  workdir: str
  spec: RunSpec
  description: dict  # what the checkpoint carries (skinjax.train.workdir.describe_run)
  model: object
  task: object
  state: object  # TrainState on the host, one copy
  step: int
  progress: dict

  @property
  def class_names(self) -> tuple[str, ...] | None:
    names = self.description['class_names']
    return tuple(names) if names is not None else None

  @property
  def variables(self) -> dict:
    """{'params', 'batch_stats'} as `model.apply` takes them."""
    return {'params': self.state.params, 'batch_stats': self.state.batch_stats}


def restore_run(workdir: str, *, step: str | int = 'best') -> RestoredRun:
  """The run in `workdir` at checkpoint `step`: 'best' (by the run's best_metric),
  'latest', or a step number; read-only.

  For 'best' and 'latest' a damaged checkpoint is passed over for the next intact one (the
  best, then the latest first), saying so in one logged line; a damaged numbered step
  raises CheckpointDamagedError listing the intact ones. FileNotFoundError when there is
  no such checkpoint.
  """
  directory = workdir_lib.checkpoint_dir(workdir)
  steps = sorted(Checkpointer(directory, read_only=True).all_steps(), reverse=True)
  if not steps:
    raise FileNotFoundError(f'--workdir={workdir}: no checkpoints in {directory}')
  if step not in ('best', 'latest') and int(step) not in steps:
    raise FileNotFoundError(f'--step={step}: no such checkpoint in {directory}; it has '
                            f'steps {", ".join(map(str, sorted(steps)))}')
  built = {}

  def template_for(description, progress):
    spec = workdir_lib.spec_of(description)
    num_classes = description['num_classes']
    built.update(spec=spec, model=build.model(spec, num_classes),
                 task=build.task(spec, num_classes, description.get('class_weights')))
    template, built['tx'] = phases.state_template(spec.phases[progress['phase']],
                                                  built['model'], spec.image_size)
    return template

  checkpoints = Checkpointer(directory, read_only=True)
  if step == 'best':
    first = _any_description(checkpoints, steps)
    ranked = Checkpointer(directory, read_only=True, best_metric=first.best_metric,
                          best_mode=first.best_mode)
    best = ranked.best_step()
    order = [best] + [s for s in steps if s != best]
  elif step == 'latest':
    order = steps
  else:
    order = [int(step)]
  try:
    state, description, progress, loaded, damaged = checkpoints.restore_intact(
        template_for, order)
  except CheckpointDamagedError as error:
    if len(order) > 1:
      raise
    intact = [s for s in steps if s != order[0] and _loads(checkpoints, template_for, s)]
    raise CheckpointDamagedError(
        f'--step={step}: {error}; intact steps: {", ".join(map(str, sorted(intact))) or "none"}'
    ) from None
  if damaged:
    logging.warning('%s', damage_report(directory, order[0], loaded, damaged))
  return RestoredRun(workdir, built['spec'], description, built['model'], built['task'],
                     state.replace(tx=built['tx']), int(loaded), progress)


def _any_description(checkpoints, steps):
  """The run's spec from the first step whose description reads (they all hold it)."""
  for step in steps:
    try:
      return workdir_lib.spec_of(checkpoints.read_config(step)[0])
    except Exception:  # a damaged step: the next one will do  # noqa: BLE001
      continue
  raise CheckpointDamagedError(f'no checkpoint in {checkpoints.directory} loads: every '
                               'step\'s description is damaged')


def _loads(checkpoints, template_for, step) -> bool:
  try:
    checkpoints.restore_intact(template_for, [step])
    return True
  except CheckpointDamagedError:
    return False
