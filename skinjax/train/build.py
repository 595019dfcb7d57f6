"""What a run spec builds: the model, the task (loss and metrics) and the preprocessing
that runs inside the jitted steps."""

from skinjax.data.pipeline import Preprocess
from skinjax.models import create_model
from skinjax.train.spec import AUGMENTATIONS, DTYPES, ConfigError, RunSpec
from skinjax.train.tasks import ClassificationTask, SegmentationTask


def model(spec: RunSpec, num_classes: int):
  """The registry model the spec names, sized for the dataset's classes."""
  kwargs = dict(spec.model_kwargs, dtype=DTYPES[spec.dtype])
  if spec.task == 'classification':
    kwargs['num_classes'] = num_classes
  return create_model(spec.model, **kwargs)


def task(spec: RunSpec, num_classes: int, derived_class_weights=None):
  """derived_class_weights: what --config.balance=class_weights found in the train split
  (the run description keeps them, so a restored run weighs its loss the same)."""
  if spec.task == 'segmentation':
    return SegmentationTask(spec.loss)
  if spec.class_weights and len(spec.class_weights) != num_classes:
    raise ConfigError(f'--config.class_weights: {len(spec.class_weights)} weights for the '
                      f'{num_classes} classes of {spec.dataset}')
  weights = spec.class_weights or derived_class_weights
  return ClassificationTask(num_classes, class_weights=tuple(weights) if weights else None,
                            label_smoothing=spec.label_smoothing)


def preprocess(spec: RunSpec) -> Preprocess:
  """Gather, augment (in training steps only) and normalise, as the spec says."""
  return Preprocess(augment=AUGMENTATIONS[spec.augment], mean=spec.normalization.mean,
                    std=spec.normalization.std)
