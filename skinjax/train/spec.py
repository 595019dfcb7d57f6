"""A run spec: every choice a training run makes, typed, frozen and checked once.

Experiment files (launch/configs/*.py) build an `ml_collections.ConfigDict` on
`base_config()`, and the command line overrides its fields (`--config.batch_size=128`,
`--config.phases[0].epochs=5`): that is the one way to set a field. `RunSpec.from_config`
turns it into a frozen RunSpec at the entry: unknown fields and wrong types are refused,
then each rule below runs once, in the one place it is written, and the first broken one
raises a one-line ConfigError naming the field and what it expects. `check_layout` adds the
rules that depend on the devices and processes at hand. Past the entry, code reads typed
fields; defaults are written only here.
"""

import collections.abc
import dataclasses
import difflib
import os
import types
import typing
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from skinjax import augment
from skinjax.data import catalog
from skinjax.data.pipeline import PLACEMENTS
from skinjax.models import MODELS, create_model, input_size_problem, task_of
from skinjax.train import parallel as parallel_lib
from skinjax.train.phases import Phase
from skinjax.train.tasks import METRICS, SEGMENTATION_LOSSES

AUGMENTATIONS = {
    'none': None,
    'paper1_classification': augment.PAPER1_CLASSIFICATION,
    'paper1_segmentation': augment.PAPER1_SEGMENTATION,
    'paper2_classification': augment.PAPER2_CLASSIFICATION,
}
TASKS = ('classification', 'segmentation')
CLASSIFICATION_LOSSES = ('softmax_cross_entropy',)
SPLIT_PROTOCOLS = ('lesion', 'paper')
BALANCING = ('none', 'paper1', 'class_weights')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
BEST_MODES = ('max', 'min')


class ConfigError(ValueError):
  """A config value or flag that cannot work; the message is one line naming it."""


@dataclasses.dataclass(frozen=True)
class Normalization:
  """Per-channel (x - mean) / std, in 0..255 units: the default maps pixels to [0, 1], as
  Keras' rescale=1/255; mean 0, std 1 leaves 0..255 for self-normalising models."""

  mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
  std: tuple[float, float, float] = (255.0, 255.0, 255.0)


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One training run. Field comments say what each holds; rules are in `_RULES`."""

  # The model: a registry name, its constructor's extra keywords, its compute dtype.
  model: str = ''
  model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  dtype: str = 'float32'
  task: str = 'classification'
  loss: str = 'softmax_cross_entropy'  # segmentation: jaccard, dice or bce
  label_smoothing: float = 0.0
  class_weights: tuple[float, ...] = ()  # one per class; () weighs all alike

  # The data: a datasets/ builder and its config, the model's resolution, how it is split
  # and balanced, how it is augmented and normalised.
  dataset: str = ''
  dataset_config: str = ''  # '' is the builder's default config
  image_size: int = 0
  split_protocol: str = 'lesion'
  balance: str = 'none'  # paper1 (duplication) or class_weights (a weighted loss)
  # Every split's images cut to their lesion mask's box (data.lesion_crops), for a
  # classifier of segment-then-classify; needs a dataset config with masks.
  crop_to_lesion: bool = False
  augment: str = 'none'
  normalization: Normalization = Normalization()
  # Build the dataset leaving out damaged files (logged, counted in its metadata).
  skip_corrupt: bool = False
  # 'name' or 'name/config' of another dataset: its validation and test images (found by
  # pixels) are left out of this run's train split, so a model pretrained here is later
  # scored on images it has never seen (what was left out: <workdir>/left_out.json).
  exclude_overlap_with: str = ''

  # The schedule: global batch sizes and the phases, in order.
  batch_size: int = 32
  eval_batch_size: int = 64
  phases: tuple[Phase, ...] = (Phase('train', epochs=1, learning_rate=1e-3),)
  init_from: str = ''  # converted backbone weights (launch/convert_weights.py)
  # A non-finite loss or gradient stops the run; True skips such updates and counts them.
  skip_nonfinite: bool = False
  seed: int = 0

  # Checkpoints: ranked by a validation metric; the latest and the best keep_best kept.
  best_metric: str = 'accuracy'
  best_mode: str = 'max'
  keep_best: int = 3
  checkpoint_every_steps: int = 0  # 0: at the end of each epoch only

  # Where it runs: the data-parallel wrapper, where the data lives, how it is sharded.
  parallel: str = 'pmap'
  data_placement: str = 'auto'
  # 0: one data shard per process. Set it to a multi-process run's process count to walk
  # that run's global batches in one process (skinjax.data.pipeline.train_order).
  data_shards: int = 0

  def __post_init__(self):
    object.__setattr__(self, 'model_kwargs', types.MappingProxyType(dict(self.model_kwargs)))
    for rule in _RULES:
      problem = rule(self)
      if problem:
        raise ConfigError(problem)

  @classmethod
  def from_config(cls, config) -> 'RunSpec':
    """A RunSpec from a ConfigDict or a plain dict (e.g. a saved run's JSON)."""
    return cls(**_typed_fields(cls, _plain(config), prefix='--config.'))

  def to_dict(self) -> dict:
    """Plain JSON-ready values (what config.json and checkpoints keep)."""
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    values['model_kwargs'] = dict(self.model_kwargs)
    values['normalization'] = {'mean': list(self.normalization.mean),
                               'std': list(self.normalization.std)}
    values['class_weights'] = list(self.class_weights)
    values['phases'] = [phase.to_dict() for phase in self.phases]
    return values

  def replace(self, **changes) -> 'RunSpec':
    """A copy with `changes`, checked like any spec."""
    return dataclasses.replace(self, **changes)

  @property
  def total_epochs(self) -> int:
    return sum(phase.epochs for phase in self.phases)

  def num_shards(self, process_count: int) -> int:
    """How many data shards each split is read in (see data_shards)."""
    return self.data_shards or process_count


def base_config() -> ml_collections.ConfigDict:
  """Every field a run has, with its default, as a ConfigDict for experiment files."""
  values = RunSpec.__new__(RunSpec)  # the defaults, before any rule runs
  for field in dataclasses.fields(RunSpec):
    default = (field.default_factory() if field.default_factory is not dataclasses.MISSING
               else field.default)
    object.__setattr__(values, field.name, default)
  plain = RunSpec.to_dict(values)
  # Tuples, not JSON's lists: the command line overrides tuple fields, not list ones.
  plain['normalization'] = {key: tuple(value) for key, value in plain['normalization'].items()}
  plain['class_weights'] = tuple(plain['class_weights'])
  config = ml_collections.ConfigDict(plain)
  config.phases = [ml_collections.ConfigDict(p) for p in config.phases]
  return config


def phase(name: str, *, epochs: int, learning_rate: float, **model_overrides):
  """One phase for an experiment file: epochs at a learning rate, the model cloned with
  `model_overrides` (e.g. train_backbone=False)."""
  return ml_collections.ConfigDict({'name': name, 'epochs': epochs,
                                    'learning_rate': learning_rate,
                                    'model_overrides': dict(model_overrides)})


# Fields a resumed run may change: how it runs and checkpoints, not what it computes.
# `phases` may change in the epochs of the phases not yet finished, and of the last one (to
# extend a run), never below the epochs done.
RESUMABLE = ('checkpoint_every_steps', 'keep_best', 'parallel', 'data_placement',
             'data_shards', 'skip_nonfinite')


def resume_changes(saved: RunSpec, new: RunSpec, *, epochs_done: int) -> list[str]:
  """What `new` changes of the run `saved` describes, one line per field ('--config.x
  old -> new'), after `epochs_done` epochs; ConfigError listing every change a resume may
  not make."""
  allowed, refused = [], []
  for field in dataclasses.fields(RunSpec):
    old, value = getattr(saved, field.name), getattr(new, field.name)
    if field.name == 'phases':
      phase_allowed, phase_refused = _phase_changes(old, value, epochs_done)
      allowed += phase_allowed
      refused += phase_refused
    elif old != value:
      line = f'--config.{field.name} {_shown(old)} -> {_shown(value)}'
      (allowed if field.name in RESUMABLE else refused).append(line)
  if refused:
    raise ConfigError(
        f'the workdir holds a run with other settings ({"; ".join(refused)}); a resume may '
        f'change only {", ".join(RESUMABLE)} and the epochs of unfinished or last phases: '
        'resume with its own settings, or start a new run in another --workdir')
  return allowed


def _shown(value):
  if isinstance(value, Normalization):
    return f'mean {list(value.mean)} std {list(value.std)}'
  return repr(dict(value)) if isinstance(value, Mapping) else repr(value)


def _phase_changes(old, new, epochs_done: int):
  """(allowed, refused) lines: only epochs may change, and only of phases not finished,
  never below what is done."""
  if [p.name for p in old] != [p.name for p in new]:
    return [], [f'--config.phases {[p.name for p in old]} -> {[p.name for p in new]}']
  allowed, refused, start = [], [], 0
  for index, (was, now) in enumerate(zip(old, new)):
    where = f'--config.phases[{index}]'
    for name in ('learning_rate', 'model_overrides'):
      if getattr(was, name) != getattr(now, name):
        refused.append(f'{where}.{name} {_shown(getattr(was, name))} -> '
                       f'{_shown(getattr(now, name))}')
    if was.epochs != now.epochs:
      line = f'{where}.epochs {was.epochs} -> {now.epochs}'
      # A finished phase keeps its length (later ones would move), but the last may grow.
      finished = epochs_done >= start + was.epochs and index < len(old) - 1
      (refused if finished or start + now.epochs < epochs_done else allowed).append(line)
    start += was.epochs
  return allowed, refused


def check_processes(parallel: str, data_placement: str, process_count: int, *,
                    flag: str = '--config.parallel'):
  """What several processes cannot do (training and evaluation alike)."""
  if process_count > 1 and parallel != 'jit':
    raise ConfigError(f'{flag}={parallel}: runs in one process only; with {process_count} '
                      f'processes use {flag}=jit')
  if process_count > 1 and data_placement == 'device':
    raise ConfigError('--config.data_placement=device: a run over several processes streams '
                      "each process's rows; use auto or stream")


def check_layout(spec: RunSpec, *, num_devices: int, process_count: int):
  """The rules that depend on where the run runs: ConfigError for the first broken one."""
  check_processes(spec.parallel, spec.data_placement, process_count)
  for name in ('batch_size', 'eval_batch_size'):
    problem = parallel_lib.batch_size_problem(getattr(spec, name), num_devices)
    if problem:
      raise ConfigError(f'--config.{name}={getattr(spec, name)}: {problem}')
  shards = spec.num_shards(process_count)
  if shards % process_count:
    raise ConfigError(f'--config.data_shards={spec.data_shards}: must be a multiple of the '
                      f'{process_count} processes (each reads whole shards)')
  for name in ('batch_size', 'eval_batch_size'):
    if getattr(spec, name) % shards:
      raise ConfigError(f'--config.{name}={getattr(spec, name)}: must be a multiple of the '
                        f'{shards} data shards (--config.data_shards; by default one per '
                        'process)')


# ------------------------------------------------------------------------------- types


def _typed_fields(cls, values: Mapping, *, prefix: str) -> dict:
  """values with each field converted to its annotated type; unknown keys refused."""
  hints = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  for key in values:
    if key not in names:
      close = difflib.get_close_matches(key, names, n=1)
      hint = f'did you mean {prefix}{close[0]}?' if close else f'known: {", ".join(names)}'
      raise ConfigError(f'{prefix}{key}: unknown field; {hint}')
  return {key: _converted(hints[key], value, f'{prefix}{key}') for key, value in values.items()}


def _plain(value):
  """ConfigDicts (also inside lists, where to_dict leaves them) as plain dicts."""
  if isinstance(value, (ml_collections.ConfigDict, Mapping)):
    return {key: _plain(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return type(value)(_plain(item) for item in value)
  return value


def _type_name(hint) -> str:
  return getattr(hint, '__name__', None) or str(hint).replace('typing.', '')


def _converted(hint, value, where: str):
  """`value` as `hint` (int, float, str, bool, tuples, mappings, nested dataclasses)."""
  def wrong(expected):
    return ConfigError(f'{where}={value!r}: expected {expected}')

  origin = typing.get_origin(hint)
  if dataclasses.is_dataclass(hint):
    if isinstance(value, hint):
      return value
    if not isinstance(value, Mapping):
      raise wrong(f'a mapping with fields {[f.name for f in dataclasses.fields(hint)]}')
    fields = _typed_fields(hint, value, prefix=f'{where}.')
    try:
      return hint(**fields)
    except (TypeError, ValueError) as error:
      raise ConfigError(f'{where}: {error}') from None
  if hint is bool:
    if not isinstance(value, bool):
      raise wrong('True or False')
    return value
  if hint is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise wrong('an integer')
    return value
  if hint is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise wrong('a number')
    return float(value)
  if hint is str:
    if not isinstance(value, str):
      raise wrong('a string')
    return value
  if origin is tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
      raise wrong(f'a list of {_type_name(typing.get_args(hint)[0])}')
    args = typing.get_args(hint)
    item_hints = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
    if len(item_hints) != len(value):
      raise wrong(f'{len(item_hints)} values')
    return tuple(_converted(item, v, f'{where}[{i}]')
                 for i, (item, v) in enumerate(zip(item_hints, value)))
  if origin in (collections.abc.Mapping, dict):
    if not isinstance(value, Mapping):
      raise wrong('a mapping of keyword arguments')
    return {str(k): v for k, v in value.items()}
  raise TypeError(f'{where}: no conversion for {hint}')  # a field type this module lacks


# ------------------------------------------------------------------------------- rules
# Each returns a one-line problem or None; they run in order, so later rules may rely on
# earlier ones (a known model, a known dataset).


def _one_of(name, value, choices):
  choices = tuple(choices)
  if value not in choices:
    return f'--config.{name}={value!r}: expected one of {", ".join(choices)}'
  return None


def _model(spec):
  if spec.model not in MODELS:
    return (f'--config.model={spec.model!r}: unknown model; known: '
            f'{", ".join(sorted(MODELS))}')
  return None


def _model_kwargs(spec):
  try:
    model = create_model(spec.model, **spec.model_kwargs)
  except TypeError as error:
    return f'--config.model_kwargs={dict(spec.model_kwargs)}: {spec.model} refuses them ({error})'
  hints = typing.get_type_hints(type(model))
  for key, value in spec.model_kwargs.items():
    if hints.get(key) in (int, float, bool, str):  # a kwarg the spec can type-check
      _converted(hints[key], value, f'--config.model_kwargs.{key}')
  if spec.model_kwargs and spec.image_size > 0:
    # A changed architecture must still build: traced, never run or compiled.
    try:
      jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(
          (1, spec.image_size, spec.image_size, 3)), train=False))
    except Exception as error:  # noqa: BLE001 - any way the module fails to build
      return (f'--config.model_kwargs={dict(spec.model_kwargs)}: {spec.model} does not build '
              f'with them at {spec.image_size}x{spec.image_size} ({type(error).__name__}: '
              f'{" ".join(str(error).split())[:160]})')
  return None


def _task(spec):
  return _one_of('task', spec.task, TASKS) or (
      None if task_of(spec.model) == spec.task else
      f'--config.task={spec.task}: model {spec.model!r} is a {task_of(spec.model)} model')


def _loss(spec):
  losses = SEGMENTATION_LOSSES if spec.task == 'segmentation' else CLASSIFICATION_LOSSES
  if spec.loss not in losses:
    return f'--config.loss={spec.loss!r}: a {spec.task} run uses one of {", ".join(losses)}'
  return None


def _label_smoothing(spec):
  if not 0.0 <= spec.label_smoothing < 1.0:
    return f'--config.label_smoothing={spec.label_smoothing}: expected 0 <= value < 1'
  if spec.label_smoothing and spec.task != 'classification':
    return '--config.label_smoothing: only classification runs use it'
  return None


def _class_weights(spec):
  if spec.class_weights and spec.task != 'classification':
    return '--config.class_weights: only classification runs use them'
  if any(weight < 0 for weight in spec.class_weights):
    return f'--config.class_weights={list(spec.class_weights)}: weights must be >= 0'
  return None


def _dataset(spec):
  if spec.dataset not in catalog.DATASETS:
    return (f'--config.dataset={spec.dataset!r}: unknown dataset; known: '
            f'{", ".join(catalog.DATASET_NAMES)}')
  entry = catalog.DATASETS[spec.dataset]
  if spec.dataset_config and spec.dataset_config not in entry.configs:
    known = ', '.join(entry.configs) if entry.configs else 'none (leave it empty)'
    return (f'--config.dataset_config={spec.dataset_config!r}: {spec.dataset} has no such '
            f'config; its configs: {known}')
  if spec.task == 'segmentation' and not entry.has_masks(spec.dataset_config):
    with_masks = ', '.join(c or "''" for c in entry.mask_configs) or 'none'
    return (f'--config.dataset_config={spec.dataset_config!r}: a segmentation run needs '
            f'masks; {spec.dataset} configs with masks: {with_masks}')
  return None


def _exclude_overlap_with(spec):
  if not spec.exclude_overlap_with:
    return None
  name, _, config = spec.exclude_overlap_with.partition('/')
  where = f'--config.exclude_overlap_with={spec.exclude_overlap_with!r}'
  if name not in catalog.DATASETS:
    return f'{where}: unknown dataset; known: {", ".join(catalog.DATASET_NAMES)}'
  if config and config not in catalog.DATASETS[name].configs:
    known = ', '.join(catalog.DATASETS[name].configs) or 'none'
    return f'{where}: {name} has no config {config!r}; its configs: {known}'
  if name == spec.dataset:
    return f'{where}: the run\'s own dataset; name another one (its splits never overlap)'
  if spec.split_protocol == 'paper':
    return (f'{where}: the paper protocol trains on copies of every split; use '
            '--config.split_protocol=lesion')
  return None


def _image_size(spec):
  if spec.image_size <= 0:
    return f'--config.image_size={spec.image_size}: must be positive'
  problem = input_size_problem(create_model(spec.model, **spec.model_kwargs), spec.image_size)
  if problem:
    return f'--config.image_size={spec.image_size}: {spec.model} takes sizes {problem}'
  return None


def _split_protocol(spec):
  return _one_of('split_protocol', spec.split_protocol, SPLIT_PROTOCOLS) or (
      f'--config.split_protocol=paper: only defined for ham10000 (paper 1), not {spec.dataset}'
      if spec.split_protocol == 'paper' and spec.dataset != 'ham10000' else None)


def _crop_to_lesion(spec):
  if not spec.crop_to_lesion:
    return None
  if spec.task != 'classification':
    return '--config.crop_to_lesion: crops feed a classifier; a segmenter sees whole images'
  entry = catalog.DATASETS.get(spec.dataset)
  if entry is not None and not entry.has_masks(spec.dataset_config):
    with_masks = ', '.join(c or '(default)' for c in entry.mask_configs) or 'none'
    return (f'--config.crop_to_lesion: cuts by the lesion masks, which {spec.dataset} '
            f'{spec.dataset_config or "(default config)"} does not have; configs with masks: '
            f'{with_masks}')
  return None


def _balance(spec):
  unknown = _one_of('balance', spec.balance, BALANCING)
  if unknown:
    return unknown
  if spec.balance == 'paper1' and (spec.dataset != 'ham10000' or spec.task != 'classification'):
    return (f'--config.balance=paper1: Table 4 factors are for ham10000 classification, not '
            f'{spec.dataset} {spec.task}')
  if spec.balance == 'class_weights':
    if spec.task != 'classification':
      return '--config.balance=class_weights: weighs classes of a classifier\'s loss only'
    if spec.class_weights:
      return ('--config.balance=class_weights: derives the weights from the train split; '
              'drop --config.class_weights, or set balance to none to give them yourself')
    if spec.split_protocol == 'paper':
      return ('--config.balance=class_weights: the paper protocol balances by duplication '
              'before splitting; use it with --config.split_protocol=lesion')
  return None


def _normalization(spec):
  if any(std <= 0 for std in spec.normalization.std):
    return f'--config.normalization.std={list(spec.normalization.std)}: must be positive'
  return None


def _batch_sizes(spec):
  for name in ('batch_size', 'eval_batch_size'):
    if getattr(spec, name) <= 0:
      return f'--config.{name}={getattr(spec, name)}: must be positive'
  return None


def _phases(spec):
  if not spec.phases:
    return '--config.phases: a run needs at least one phase'
  names = [phase.name for phase in spec.phases]
  if len(set(names)) != len(names) or not all(names):
    return f'--config.phases: phase names must be distinct and non-empty, got {names}'
  model = create_model(spec.model, **spec.model_kwargs)
  for index, phase in enumerate(spec.phases):
    where = f'--config.phases[{index}]'
    if phase.epochs < 0:
      return f'{where}.epochs={phase.epochs}: must be >= 0'
    if not phase.learning_rate > 0:
      return f'{where}.learning_rate={phase.learning_rate}: must be > 0'
    try:
      model.clone(**phase.model_overrides)
    except TypeError:
      unknown = sorted(set(phase.model_overrides) - {f.name for f in dataclasses.fields(model)})
      return (f'{where}.model_overrides: {spec.model} has no field(s) {", ".join(unknown)}')
  return None


def _init_from(spec):
  if not spec.init_from:
    return None
  if not hasattr(create_model(spec.model, **spec.model_kwargs), 'train_backbone'):
    return (f'--config.init_from: only a backbone-and-head classifier takes pretrained '
            f'backbone weights, not {spec.model}')
  if not os.path.isdir(spec.init_from):
    return f'--config.init_from={spec.init_from}: no such directory of converted weights'
  return None


def _seed(spec):
  return f'--config.seed={spec.seed}: must be >= 0' if spec.seed < 0 else None


def _checkpoints(spec):
  names = METRICS[spec.task]
  if spec.best_metric not in names:
    return (f'--config.best_metric={spec.best_metric!r}: a {spec.task} run measures '
            f'{", ".join(names)}')
  if spec.keep_best < 0:
    return f'--config.keep_best={spec.keep_best}: must be >= 0'
  if spec.checkpoint_every_steps < 0:
    return f'--config.checkpoint_every_steps={spec.checkpoint_every_steps}: must be >= 0'
  return _one_of('best_mode', spec.best_mode, BEST_MODES)


def _where(spec):
  if spec.data_shards < 0:
    return f'--config.data_shards={spec.data_shards}: must be >= 0 (0: one per process)'
  return (_one_of('parallel', spec.parallel, parallel_lib.PARALLEL_MODES)
          or _one_of('dtype', spec.dtype, DTYPES)
          or _one_of('data_placement', spec.data_placement, PLACEMENTS))


def _augment(spec):
  return _one_of('augment', spec.augment, AUGMENTATIONS)


_RULES = (_model, _model_kwargs, _task, _loss, _label_smoothing, _class_weights, _dataset,
          _image_size, _split_protocol, _exclude_overlap_with, _balance, _crop_to_lesion,
          _augment, _normalization, _batch_sizes, _phases, _init_from, _seed, _checkpoints, _where)
