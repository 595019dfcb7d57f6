"""A run restored from its workdir alone, at its best, latest or a numbered checkpoint, on
whatever devices this process has (any count, either parallel mode)."""

import dataclasses

from skinjax.train import build, phases
from skinjax.train import workdir as workdir_lib
from skinjax.train.checkpoint import Checkpointer
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
  'latest', or a step number. FileNotFoundError when there is no such checkpoint."""
  directory = workdir_lib.checkpoint_dir(workdir)
  steps = Checkpointer(directory, read_only=True).all_steps()
  if not steps:
    raise FileNotFoundError(f'--workdir={workdir}: no checkpoints in {directory}')
  first, _ = Checkpointer(directory, read_only=True).read_config(steps[-1])
  spec = workdir_lib.spec_of(first)
  checkpoints = Checkpointer(directory, read_only=True, best_metric=spec.best_metric,
                             best_mode=spec.best_mode)
  if step == 'best':
    step = checkpoints.best_step()
  elif step == 'latest':
    step = checkpoints.latest_step()
  elif int(step) not in steps:
    raise FileNotFoundError(f'--step={step}: no such checkpoint in {directory}; it has '
                            f'steps {", ".join(map(str, steps))}')
  description, progress = checkpoints.read_config(step)
  num_classes = description['num_classes']
  model, task = build.model(spec, num_classes), build.task(spec, num_classes)
  template, tx = phases.state_template(spec.phases[progress['phase']], model, spec.image_size)
  state, _, _ = checkpoints.restore(template, step)
  return RestoredRun(workdir, spec, description, model, task, state.replace(tx=tx), int(step),
                     progress)
