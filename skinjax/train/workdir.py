"""A run's directory: where each of its files lives, and config.json, the description of
the run that its checkpoints also carry (so evaluation needs nothing but the workdir).

  <workdir>/config.json        the run description (describe_run), rewritten atomically
  <workdir>/checkpoints/       orbax steps: state, the description, progress counters
  <workdir>/phases/<name>/     each phase's final weights, kept for good
  <workdir>/metrics.jsonl      one record per epoch (skinjax.train.metric_writer)
  <workdir>/tensorboard/       the same scalars for TensorBoard
  <workdir>/report/<split>/    evaluation reports (skinjax.evaluation)
"""

import json
import os

from skinjax.train.spec import ConfigError, RunSpec

CONFIG_FILE = 'config.json'
LEFT_OUT_FILE = 'left_out.json'


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, 'checkpoints')


def phase_dir(workdir: str, phase_name: str) -> str:
  return os.path.join(workdir, 'phases', phase_name)


def phase_dirs(workdir: str) -> list[str]:
  """The phase folders that exist."""
  root = os.path.join(workdir, 'phases')
  return [os.path.join(root, name) for name in sorted(os.listdir(root))] if os.path.isdir(
      root) else []


def report_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, 'report', name)


def describe_run(spec: RunSpec, *, class_names, dataset_full_name: str, data_dir: str,
                 left_out: dict | None = None, class_weights=None) -> dict:
  """What a checkpoint carries besides the weights: enough to rebuild and check the run.

  class_names: the classifier's classes, or None for a segmenter (one logit per pixel).
  left_out: what spec.exclude_overlap_with left out of the train split
    (experiment_data.leave_out_overlap_with); its counts are kept, its pairs go to
    left_out.json.
  class_weights: the loss weights spec.balance='class_weights' derived from the train split.
  """
  summary = None if left_out is None else {
      key: left_out[key] for key in ('dataset', 'splits', 'count', 'by_class')}
  return {
      'model': spec.model,
      'model_kwargs': dict(spec.model_kwargs),
      'task': spec.task,
      'num_classes': len(class_names) if class_names is not None else 1,
      'class_names': list(class_names) if class_names is not None else None,
      'image_size': spec.image_size,
      'normalization': {'mean': list(spec.normalization.mean),
                        'std': list(spec.normalization.std)},
      'dataset': spec.dataset,
      'dataset_config': spec.dataset_config,
      'dataset_full_name': dataset_full_name,
      'data_dir': os.path.abspath(data_dir),
      'split_protocol': spec.split_protocol,
      'seed': spec.seed,
      'config': spec.to_dict(),
      'left_out': summary,
      'class_weights': None if class_weights is None else list(class_weights),
  }


def spec_of(description: dict) -> RunSpec:
  """The RunSpec a run description holds."""
  return RunSpec.from_config(description['config'])


def write_description(workdir: str, description: dict):
  """Writes config.json under a temporary name, then renames it (never half a file)."""
  _write_json(workdir, CONFIG_FILE, description)


def write_left_out(workdir: str, left_out: dict):
  """left_out.json: every image spec.exclude_overlap_with left out, with its match."""
  _write_json(workdir, LEFT_OUT_FILE, left_out)


def read_left_out(workdir: str) -> dict | None:
  """What write_left_out recorded, or None for a run that left nothing out."""
  path = os.path.join(workdir, LEFT_OUT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as file:
    return json.load(file)


def _write_json(workdir: str, name: str, value):
  temporary = os.path.join(workdir, name + '.tmp')
  with open(temporary, 'w') as file:
    json.dump(value, file, indent=2)
  os.replace(temporary, os.path.join(workdir, name))


def check_writable(workdir: str):
  """The workdir exists (or can be made) and takes files; ConfigError naming it if not."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, '.write_test')
    with open(probe, 'w') as file:
      file.write('ok')
    os.remove(probe)
  except OSError as error:
    raise ConfigError(f'--workdir={workdir}: cannot write there ({error.strerror})') from None
