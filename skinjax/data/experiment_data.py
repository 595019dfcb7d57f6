"""The arrays a run trains and evaluates on, as its config asks: dataset, resolution, split
protocol and class balancing."""

import dataclasses

from absl import logging
import numpy as np

from skinjax.data import arrays as arrays_lib, balance, builders, lesion_crops
from skinjax.data import overlap as overlap_lib
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
  # What spec.exclude_overlap_with left out of `train` (JSON-ready; see leave_out_overlap),
  # or None.
  left_out: dict | None = None
  # spec.balance='class_weights': the loss weight of each class, from the train split.
  class_weights: tuple[float, ...] | None = None


SPLITS = ('train', 'validation', 'test')
# The splits of the other dataset whose images a pretraining run must not see.
OVERLAP_SPLITS = ('validation', 'test')


def prepare(spec, *, data_dir: str | None = None, manual_dir: str | None = None,
            builder=None, overlap_manual_dir: str | None = None,
            leave_out_overlap: bool = True) -> ExperimentData:
  """Builds the dataset if needed, loads its splits at spec.image_size, applies
  spec.exclude_overlap_with, spec.split_protocol and spec.balance.

  spec: a skinjax.train.spec.RunSpec (dataset, dataset_config, skip_corrupt, image_size,
  split_protocol, balance, seed, exclude_overlap_with, crop_to_lesion: every split cut to
  its masks' lesion boxes at lesion_crops.SOURCE_SIZE, then resized to image_size).
  builder: an already prepared builder to read instead (e.g. the version a run trained on,
    from builders.reopen).
  overlap_manual_dir: the download of spec.exclude_overlap_with's dataset, when it is not
    prepared in data_dir yet.
  leave_out_overlap: False keeps the train split whole (evaluation, which scores the
    validation and test splits only, need not build the other dataset).
  """
  if builder is None:
    builder = builders.prepare(spec.dataset, data_dir=data_dir, manual_dir=manual_dir,
                               config=spec.dataset_config or None,
                               skip_corrupt=spec.skip_corrupt)
  class_names = tuple(builder.info.features['label'].names)
  if spec.crop_to_lesion:  # cut at a higher resolution, by each image's own mask
    train, validation, test = (
        lesion_crops.crop_split(load(builder, split, lesion_crops.SOURCE_SIZE), spec.image_size)
        for split in SPLITS)
  else:
    train, validation, test = (load(builder, split, spec.image_size) for split in SPLITS)
  left_out = None
  if spec.exclude_overlap_with and leave_out_overlap:
    train, left_out = leave_out_overlap_with(
        spec.exclude_overlap_with, builder, train, class_names,
        data_dir=data_dir or str(arrays_lib.cache_root(builder).parent),
        manual_dir=overlap_manual_dir)
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
  weights = (balance.inverse_frequency_weights(train.labels, len(class_names))
             if spec.balance == 'class_weights' else None)
  return ExperimentData(train, indices, validation, test, class_names, builder.info.full_name,
                        left_out, weights)


def leave_out_overlap_with(other: str, builder, train: SplitArrays, class_names, *,
                           data_dir: str, manual_dir: str | None):
  """`train` without the images of `other` ('name' or 'name/config')'s validation and test
  splits, matched by pixels (skinjax.data.overlap), and a record of what went.

  The other dataset is built in data_dir if needed (from manual_dir). Returns (train,
  record): record is JSON-ready, with the count left out, per class, the train split's
  class counts before and after, and every matched pair.
  """
  name, _, config = other.partition('/')
  try:
    other_builder = builders.prepare(name, data_dir=data_dir, manual_dir=manual_dir,
                                     config=config or None)
  except builders.DatasetNotBuilt as error:
    raise builders.DatasetNotBuilt(
        f'--config.exclude_overlap_with={other}: {name} is not built in {data_dir}; give '
        '--overlap_manual_dir, the folder with its downloaded files') from error
  found = overlap_lib.overlap(other_builder, OVERLAP_SPLITS, builder, 'train')
  if len(found.mask) != len(train):
    raise DatasetFileError(f'{builder.data_path}: the train split has {len(train)} examples '
                           f'in the array cache and {len(found.mask)} fingerprinted')
  record = {
      'dataset': other_builder.info.full_name,
      'splits': list(OVERLAP_SPLITS),
      'count': found.count,
      'by_class': found.by_class(train.labels, class_names),
      'train_before': _class_counts(train.labels, class_names),
      'train_after': _class_counts(train.labels[~found.mask], class_names),
      'max_distance': found.max_distance,
      'confirm_distance': found.confirm_distance,
      'pairs': found.pairs(),
  }
  logging.info('left out of %s train: %d of %d images that %s %s holds (%s)',
               builder.info.full_name, found.count, len(train), record['dataset'],
               '/'.join(OVERLAP_SPLITS),
               ', '.join(f'{k} {v}' for k, v in record['by_class'].items() if v))
  return train.take(np.flatnonzero(~found.mask)), record


def _class_counts(labels, class_names) -> dict[str, int]:
  return {name: int((labels == c).sum()) for c, name in enumerate(class_names)}


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
