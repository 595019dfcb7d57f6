"""What an evaluation scores: a split of the run's own data, or a split of another dataset
of the same task.

Another dataset must fit the run: a segmenter needs masks (HAM10000's with_masks, PH2);
a classifier needs its classes mapped onto the run's by a declared table
(skinjax.data.class_maps). Images the run saw (its train and validation splits; every
split under paper 1's protocol) are left out of another dataset's score, found by their
pixels, not their names: many ISIC images are HAM10000 images.
"""

import dataclasses

import numpy as np

from skinjax.data import builders, catalog, class_maps, experiment_data, overlap
from skinjax.data.arrays import SplitArrays
from skinjax.train import workdir as workdir_lib
from skinjax.train.spec import ConfigError

SPLITS = experiment_data.SPLITS + ('all',)


@dataclasses.dataclass
class Target:
  """The examples to score, labels already in the run's classes."""

  name: str  # the report folder: 'test', or '<dataset>-<split>' for another dataset
  dataset_full_name: str
  split: str
  arrays: SplitArrays
  class_map: dict | None = None  # the scored dataset's class -> the run's (another dataset)
  excluded: dict | None = None  # what was left out as seen by the run, and why
  crops: dict | None = None  # lesion crops instead of whole images: how (evaluation.crops)
  kmeans: dict | None = None  # k-means segmentation scored on the same images


def own_split(data: experiment_data.ExperimentData, split: str) -> Target:
  """A split of the data the run trained on (its split protocol applied)."""
  arrays = {'train': data.train, 'validation': data.validation, 'test': data.test}
  if split not in arrays:
    raise ConfigError(f'--split={split}: the run\'s own data has splits '
                      f'{", ".join(arrays)}; `all` is for another --dataset')
  return Target(split, data.dataset_full_name, split, arrays[split])


def check_fits(run, dataset: str, dataset_config: str) -> str:
  """The config to build `dataset` with for `run`; ConfigError naming both when the
  dataset cannot be scored by the run."""
  if dataset not in catalog.DATASETS:
    raise ConfigError(f'--dataset={dataset!r}: unknown dataset; known: '
                      f'{", ".join(catalog.DATASET_NAMES)}')
  entry = catalog.DATASETS[dataset]
  if dataset_config and dataset_config not in entry.configs:
    raise ConfigError(f'--dataset_config={dataset_config!r}: {dataset} has configs '
                      f'{", ".join(entry.configs) or "none"}')
  if run.spec.task == 'segmentation':
    if not dataset_config and entry.mask_configs:
      dataset_config = entry.mask_configs[0]
    if not entry.has_masks(dataset_config):
      raise ConfigError(f'--dataset={dataset}: the run in {run.workdir} is a segmenter, and '
                        f'{dataset} {dataset_config or ""} has no lesion masks to score it on')
  return dataset_config


def other_dataset(run, dataset: str, dataset_config: str, split: str, *, data_dir: str,
                  manual_dir: str | None) -> Target:
  """`split` ('all': every split) of another dataset, at the run's resolution, with its
  labels mapped onto the run's classes."""
  if split not in SPLITS:
    raise ConfigError(f'--split={split}: expected one of {", ".join(SPLITS)}')
  dataset_config = check_fits(run, dataset, dataset_config)
  own = own_builder(run, data_dir)  # first: without it nothing can be scored
  builder = builders.prepare(dataset, data_dir=data_dir, manual_dir=manual_dir,
                             config=dataset_config or None)
  arrays = experiment_data.load(builder, split, run.spec.image_size)
  mapping = None
  if run.spec.task == 'classification':
    names = tuple(builder.info.features['label'].names)
    mapping = class_maps.class_map(names, run.class_names)
    if mapping is None:
      raise ConfigError(
          f'--dataset={dataset}: its classes ({", ".join(names)}) do not map onto the classes '
          f'of the run in {run.workdir} ({", ".join(run.class_names)}); the declared maps '
          'are in skinjax/data/class_maps.py')
    lookup = np.array([run.class_names.index(mapping[name]) for name in names], np.int32)
    arrays = dataclasses.replace(arrays, labels=lookup[arrays.labels])
  seen, excluded = _seen_by_run(run, own, builder, split)
  return Target(f'{dataset}-{split}', builder.info.full_name, split,
                arrays.take(np.flatnonzero(~seen)), mapping, excluded)


def seen_splits(spec) -> tuple[str, ...]:
  """The splits of its own dataset a run saw: trained on, or chose its checkpoint by
  (paper 1's protocol duplicates and re-splits all of them)."""
  return experiment_data.SPLITS if spec.split_protocol == 'paper' else ('train', 'validation')


def own_builder(run, data_dir: str, manual_dir: str | None = None):
  """The prepared dataset the run trained on (its very version: another may split
  otherwise), from `data_dir` or the run's own."""
  return builders.reopen(run.description['dataset_full_name'],
                         data_dirs=[data_dir, run.description['data_dir']],
                         manual_dir=manual_dir, skip_corrupt=run.spec.skip_corrupt)


def _seen_by_run(run, own, builder, split: str):
  """(bool[N] over the target's examples: seen by the run, the report's account of it).
  own: the run's own prepared dataset."""
  sources = seen_splits(run.spec)
  # Train images the run left out (--config.exclude_overlap_with) were never trained on.
  left_out = workdir_lib.read_left_out(run.workdir)
  unseen = {pair['target_id'] for pair in left_out['pairs']} if left_out else set()
  found = [overlap.overlap(own, sources, builder, name)
           for name in (experiment_data.SPLITS if split == 'all' else (split,))]
  masks, pairs = [], []
  for result in found:
    seen = [pair for pair in result.pairs()
            if not (pair['source_split'] == 'train' and pair['source_id'] in unseen)]
    mask = np.zeros(len(result.mask), bool)
    mask[[pair['target_index'] for pair in seen]] = True
    masks.append(mask)
    pairs += seen
  mask = np.concatenate(masks)
  excluded = {
      'count': int(mask.sum()), 'of': int(len(mask)),
      'rule': (f'equal pixels, or a near-duplicate (64-bit perceptual hash within '
               f'{found[0].max_distance} bits, confirmed by the 256-bit one within '
               f'{found[0].confirm_distance}) of an image in {own.info.full_name} '
               f'{"/".join(sources)}'
               + (f', less the {len(unseen)} the run left out of its train split'
                  if unseen else '')),
      'image_ids': sorted({pair['target_id'] for pair in pairs}),
  }
  return mask, excluded
