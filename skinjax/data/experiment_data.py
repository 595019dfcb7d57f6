"""The arrays a run trains and evaluates on, as its config asks: dataset, resolution, split
protocol and class balancing."""

import dataclasses

import numpy as np

from skinjax.data import arrays as arrays_lib, balance, builders
from skinjax.data.arrays import SplitArrays
from skinjax.data.image_files import DatasetFileError


@dataclasses.dataclass
class ExperimentData:
  train: SplitArrays
  train_indices: np.ndarray  # int, into `train`, repeated where classes are balanced
  validation: SplitArrays
  test: SplitArrays
  class_names: tuple[str, ...]
  dataset_full_name: str


SPLITS = ('train', 'validation', 'test')


def prepare(spec, *, data_dir: str | None = None, manual_dir: str | None = None,
            builder=None) -> ExperimentData:
  """Builds the dataset if needed, loads its splits at spec.image_size, applies
  spec.split_protocol and spec.balance.

  spec: a skinjax.train.spec.RunSpec (dataset, dataset_config, skip_corrupt, image_size,
  split_protocol, balance, seed).
  builder: an already prepared builder to read instead (e.g. the version a run trained on,
    from builders.reopen).
  """
  if builder is None:
    builder = builders.prepare(spec.dataset, data_dir=data_dir, manual_dir=manual_dir,
                               config=spec.dataset_config or None,
                               skip_corrupt=spec.skip_corrupt)
  class_names = tuple(builder.info.features['label'].names)
  train, validation, test = (load(builder, split, spec.image_size) for split in SPLITS)
  if spec.split_protocol == 'paper':
    # Paper 1: duplicate the whole dataset, then split the copies 80/20; its test split
    # doubles as validation, as the paper's Keras code validated on it.
    everything = SplitArrays.concatenate([train, validation, test])
    split = balance.paper_split(everything.labels, class_names, seed=spec.seed)
    test = everything.take(split['test'])
    return ExperimentData(everything, split['train'], test, test, class_names,
                          builder.info.full_name)
  indices = np.arange(len(train))
  if spec.balance == 'paper1':
    indices = balance.duplicate_by_class(indices, train.labels, class_names)
  return ExperimentData(train, indices, validation, test, class_names, builder.info.full_name)


def load(builder, split: str, image_size: int) -> SplitArrays:
  """One split of a prepared builder at image_size; 'all' is every split, in order."""
  available = set(builder.info.splits)
  for name in SPLITS if split == 'all' else (split,):
    if name not in available:
      raise DatasetFileError(f'{builder.data_path}: {builder.info.full_name} has no {name!r} '
                             f'split (it has {sorted(available)}); too few images for the '
                             'split fractions?')
  if split == 'all':
    return SplitArrays.concatenate([arrays_lib.load_split(builder, name, image_size)
                                    for name in SPLITS])
  return arrays_lib.load_split(builder, split, image_size)
