"""The arrays a run trains and evaluates on, as its config asks: dataset, resolution, split
protocol and class balancing."""

import dataclasses

import numpy as np

from skinjax.data import arrays as arrays_lib, balance, builders
from skinjax.data.arrays import SplitArrays


@dataclasses.dataclass
class ExperimentData:
  train: SplitArrays
  train_indices: np.ndarray  # int, into `train`, repeated where classes are balanced
  validation: SplitArrays
  test: SplitArrays
  class_names: tuple[str, ...]
  dataset_full_name: str


def prepare(config, *, data_dir: str, manual_dir: str | None) -> ExperimentData:
  """Builds the dataset if needed, loads its splits at config.image_size, applies
  config.split_protocol and config.balance."""
  # skip_corrupt: set by --skip_corrupt (launch/common_flags.py); absent means strict.
  builder = builders.prepare(config.dataset, data_dir=data_dir, manual_dir=manual_dir,
                             config=config.get('dataset_config') or None,
                             skip_corrupt=bool(config.get('skip_corrupt', False)))
  features = builder.info.features
  class_names = tuple(features['label'].names)
  available = set(builder.info.splits)
  for split in ('train', 'validation', 'test'):
    if split not in available:
      raise ValueError(f'{builder.info.full_name} has no {split!r} split (it has '
                       f'{sorted(available)}); too few images for the split fractions?')
  load = lambda split: arrays_lib.load_split(builder, split, config.image_size)  # noqa: E731
  train, validation, test = load('train'), load('validation'), load('test')
  if config.split_protocol == 'paper':
    # Paper 1: duplicate the whole dataset, then split the copies 80/20; its test split
    # doubles as validation, as the paper's Keras code validated on it.
    everything = SplitArrays.concatenate([train, validation, test])
    split = balance.paper_split(everything.labels, class_names, seed=config.seed)
    test = everything.take(split['test'])
    return ExperimentData(everything, split['train'], test, test, class_names,
                          builder.info.full_name)
  indices = np.arange(len(train))
  if config.balance == 'paper1':
    indices = balance.duplicate_by_class(indices, train.labels, class_names)
  return ExperimentData(train, indices, validation, test, class_names, builder.info.full_name)
