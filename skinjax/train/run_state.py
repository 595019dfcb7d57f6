"""A run's model, task and state rebuilt from its workdir alone (for evaluation, prediction
and resumption), on whatever devices this process has."""

import dataclasses
import json
import os

import jax
import ml_collections

from skinjax.train import experiment
from skinjax.train.checkpoint import Checkpointer
from skinjax.train.state import create_train_state

CONFIG_FILE = 'config.json'


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, 'checkpoints')


def description(config, *, num_classes: int, class_names, dataset_full_name: str,
                data_dir: str) -> dict:
  """What a checkpoint carries besides the weights: enough to rebuild and check the run."""
  return {
      'model': config.model,
      'model_kwargs': dict(config.model_kwargs or {}),
      'task': config.task,
      'num_classes': num_classes,
      'class_names': list(class_names) if class_names is not None else None,
      'image_size': config.image_size,
      'normalization': {'mean': list(config.normalization.mean),
                        'std': list(config.normalization.std)},
      'dataset': config.dataset,
      'dataset_config': config.get('dataset_config'),
      'dataset_full_name': dataset_full_name,
      'data_dir': os.path.abspath(data_dir),
      'split_protocol': config.split_protocol,
      'seed': config.seed,
      'config': json.loads(config.to_json_best_effort()),
  }


def write_config(workdir: str, run_description: dict):
  if jax.process_index() == 0:
    temporary = os.path.join(workdir, CONFIG_FILE + '.tmp')
    with open(temporary, 'w') as file:
      json.dump(run_description, file, indent=2)
    os.replace(temporary, os.path.join(workdir, CONFIG_FILE))


def config_from_description(run_description: dict) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(run_description['config'])
  # ConfigDict converts nested dicts, not the dicts inside a list.
  config.phases = [ml_collections.ConfigDict(phase) for phase in config.phases]
  return config


def phase_model(config, model, phase_index: int):
  """The model as phase `phase_index` runs it (e.g. with the backbone frozen)."""
  overrides = dict(config.phases[phase_index].get('model_overrides') or {})
  return model.clone(**overrides) if overrides else model


def state_template(config, model, phase_index: int):
  """Abstract TrainState of phase `phase_index` (its optimizer's state structure)."""
  model = phase_model(config, model, phase_index)
  tx = experiment.build_optimizer(model, config.phases[phase_index].learning_rate)
  size = config.image_size
  return jax.eval_shape(lambda: create_train_state(jax.random.key(0), model,
                                                    (1, size, size, 3), tx)), tx


@dataclasses.dataclass
class RestoredRun:
  config: ml_collections.ConfigDict
  description: dict
  model: object
  task: object
  state: object  # TrainState on the host, one copy
  step: int
  progress: dict


def restore_run(workdir: str, *, step: str | int = 'best') -> RestoredRun:
  """The run in `workdir` at its best (or latest, or a numbered) checkpoint."""
  checkpoints = Checkpointer(checkpoint_dir(workdir), read_only=True)
  if not checkpoints.all_steps():
    raise FileNotFoundError(f'--workdir={workdir}: no checkpoints in {checkpoints.directory}')
  saved_description, _ = checkpoints.read_config()
  config = config_from_description(saved_description)
  ranked = Checkpointer(checkpoint_dir(workdir), read_only=True,
                        best_metric=config.best_metric, best_mode=config.best_mode)
  if step == 'best':
    step = ranked.best_step()
  elif step == 'latest':
    step = ranked.latest_step()
  run_description, progress = ranked.read_config(step)
  model = experiment.build_model(config, run_description['num_classes'])
  task = experiment.build_task(config, run_description['num_classes'])
  template, tx = state_template(config, model, progress['phase'])
  state, _, _ = ranked.restore(template, step)
  return RestoredRun(config, run_description, model, task, state.replace(tx=tx), int(step),
                     progress)
