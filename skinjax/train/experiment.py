"""What a run is: its config, checked before anything is built, and the pieces it names.

A config is an `ml_collections.ConfigDict` (one file per experiment in launch/configs/,
overridden from the command line). `check` turns every mistake a user can make in one into
a one-line ConfigError before any data is read or any code is compiled.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections

from skinjax import augment
from skinjax.data import builders
from skinjax.models import MODELS, create_model
from skinjax.train import parallel as parallel_lib
from skinjax.train.state import keras_adam
from skinjax.train.tasks import SEGMENTATION_LOSSES, ClassificationTask, SegmentationTask

AUGMENTATIONS = {
    'none': None,
    'paper1_classification': augment.PAPER1_CLASSIFICATION,
    'paper1_segmentation': augment.PAPER1_SEGMENTATION,
    'paper2_classification': augment.PAPER2_CLASSIFICATION,
}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
TASKS = ('classification', 'segmentation')
SPLIT_PROTOCOLS = ('lesion', 'paper')
BALANCING = ('none', 'paper1')


class ConfigError(ValueError):
  """A config value or flag that cannot work; the message is one line naming it."""


def check(config, *, workdir: str | None = None, num_devices: int | None = None):
  """Raises ConfigError for the first problem found, before anything is built."""
  def fail(message):
    raise ConfigError(message)

  if config.model not in MODELS:
    fail(f'--config.model={config.model!r}: unknown model; known: {", ".join(sorted(MODELS))}')
  if config.dataset not in builders.DATASET_NAMES:
    fail(f'--config.dataset={config.dataset!r}: unknown dataset; known: '
         f'{", ".join(builders.DATASET_NAMES)}')
  if config.task not in TASKS:
    fail(f'--config.task={config.task!r}: expected one of {", ".join(TASKS)}')
  if config.task == 'segmentation' and config.loss not in SEGMENTATION_LOSSES:
    fail(f'--config.loss={config.loss!r}: expected one of {", ".join(SEGMENTATION_LOSSES)}')
  if config.parallel not in parallel_lib.PARALLEL_MODES:
    fail(f'--parallel={config.parallel!r}: expected one of '
         f'{", ".join(parallel_lib.PARALLEL_MODES)}')
  if config.dtype not in DTYPES:
    fail(f'--dtype={config.dtype!r}: expected one of {", ".join(DTYPES)}')
  if config.augment not in AUGMENTATIONS:
    fail(f'--config.augment={config.augment!r}: expected one of {", ".join(AUGMENTATIONS)}')
  if config.split_protocol not in SPLIT_PROTOCOLS:
    fail(f'--split_protocol={config.split_protocol!r}: expected one of '
         f'{", ".join(SPLIT_PROTOCOLS)}')
  if config.split_protocol == 'paper' and config.dataset != 'ham10000':
    fail(f'--split_protocol=paper: only defined for ham10000 (paper 1), not {config.dataset}')
  if config.balance not in BALANCING:
    fail(f'--config.balance={config.balance!r}: expected one of {", ".join(BALANCING)}')
  if config.balance == 'paper1' and config.dataset != 'ham10000':
    fail(f'--config.balance=paper1: Table 4 factors are for ham10000, not {config.dataset}')
  if config.image_size <= 0:
    fail(f'--config.image_size={config.image_size}: must be positive')
  if not config.phases:
    fail('--config.phases: a run needs at least one phase')
  for index, phase in enumerate(config.phases):
    if phase.epochs < 0 or phase.learning_rate <= 0:
      fail(f'--config.phases[{index}] ({phase.name}): epochs must be >= 0 and learning_rate > 0')
  num_devices = num_devices or jax.local_device_count()
  for name in ('batch_size', 'eval_batch_size'):
    size = config[name]
    if size <= 0 or size % num_devices:
      fail(f'--config.{name}={size}: must be a positive multiple of the {num_devices} '
           'device(s)')
  shards = data_shards(config)
  if shards % jax.process_count():
    fail(f'--config.data_shards={config.data_shards}: must be a multiple of the '
         f'{jax.process_count()} processes (each reads whole shards)')
  for name in ('batch_size', 'eval_batch_size'):
    if config[name] % shards:
      fail(f'--config.{name}={config[name]}: must be a multiple of the {shards} data shards '
           '(--config.data_shards; by default one per process)')
  if workdir is not None:
    check_workdir(workdir)


def data_shards(config) -> int:
  """How many data shards each split is read in: config.data_shards, or (0, the default)
  one per process. Each process reads only its own shards (skinjax.data.pipeline)."""
  value = config.get('data_shards', 0)
  if value < 0:
    raise ConfigError(f'--config.data_shards={value}: must be >= 0 (0: one per process)')
  return value or jax.process_count()


def check_workdir(workdir: str):
  """The workdir exists (or can be made) and takes files."""
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, '.write_test')
    with open(probe, 'w') as file:
      file.write('ok')
    os.remove(probe)
  except OSError as error:
    raise ConfigError(f'--workdir={workdir}: cannot write there ({error.strerror})') from None


def build_model(config, num_classes: int, **overrides):
  """The registry model the config names, sized for the dataset's classes."""
  kwargs = dict(config.model_kwargs or {})
  kwargs['dtype'] = DTYPES[config.dtype]
  if config.task == 'classification':
    kwargs['num_classes'] = num_classes
  kwargs.update(overrides)
  return create_model(config.model, **kwargs)


def build_task(config, num_classes: int):
  if config.task == 'classification':
    weights = tuple(config.class_weights) if config.get('class_weights') else None
    return ClassificationTask(num_classes, class_weights=weights,
                              label_smoothing=config.get('label_smoothing', 0.0))
  return SegmentationTask(config.loss)


def build_optimizer(model, learning_rate: float):
  """Keras' Adam; for a transfer-learning classifier, only on what its phase trains."""
  optimizer = keras_adam(learning_rate)
  if hasattr(model, 'train_backbone'):
    from skinjax.train import transfer  # only transfer-learning classifiers need it
    return transfer.transfer_optimizer(model, optimizer)
  return optimizer


def phase_boundaries(config) -> list[tuple[int, int]]:
  """(first epoch, end epoch) of each phase, epochs counted across phases."""
  bounds, start = [], 0
  for phase in config.phases:
    bounds.append((start, start + phase.epochs))
    start += phase.epochs
  return bounds


def phase_of_epoch(config, epoch: int) -> int:
  for index, (start, end) in enumerate(phase_boundaries(config)):
    if start <= epoch < end:
      return index
  return len(config.phases) - 1


def base_config():
  """Every field a run config has, with defaults; experiment files set their paper's table."""
  config = ml_collections.ConfigDict()
  config.model = ''
  config.model_kwargs = ml_collections.ConfigDict()
  config.task = 'classification'
  config.loss = 'softmax_cross_entropy'  # segmentation: jaccard, dice or bce
  config.label_smoothing = 0.0
  config.class_weights = ()

  config.dataset = ''
  config.dataset_config = ''
  config.image_size = 0
  config.split_protocol = 'lesion'
  config.balance = 'none'
  config.augment = 'none'
  # Pixels / 255, as Keras' rescale=1/255; (0, 1) leaves 0..255 for self-normalising models.
  config.normalization = ml_collections.ConfigDict({'mean': (0.0, 0.0, 0.0),
                                                    'std': (255.0, 255.0, 255.0)})

  config.batch_size = 32
  config.eval_batch_size = 64
  config.phases = [phase('train', epochs=1, learning_rate=1e-3)]
  config.init_from = ''

  config.best_metric = 'accuracy'
  config.best_mode = 'max'
  config.keep_best = 3
  config.checkpoint_every_steps = 0
  # A non-finite loss or gradient stops the run; True skips such updates and counts them.
  config.skip_nonfinite = False
  # Build the dataset leaving out damaged files (logged, counted in its metadata).
  config.skip_corrupt = False

  config.parallel = 'pmap'
  config.dtype = 'float32'
  config.data_placement = 'auto'
  # 0: one data shard per process. Set it to a multi-process run's process count to walk
  # that run's global batches in one process (skinjax.data.pipeline.train_order).
  config.data_shards = 0
  config.seed = 0
  return config


def phase(name: str, *, epochs: int, learning_rate: float, **model_overrides):
  """One training phase: epochs at a learning rate, the model cloned with overrides."""
  return ml_collections.ConfigDict({'name': name, 'epochs': epochs,
                                    'learning_rate': learning_rate,
                                    'model_overrides': dict(model_overrides)})
