"""Loads the TFDS builders of `datasets/` by path and prepares them from a manual directory,
and gives those builders their shared answer to damaged files (`SkipsDamagedFiles`).

The stock command does the same: `tfds build datasets/ham10000 --manual_dir=...`. This
module lets launchers and tests build through the Python API, without the tfds CLI's
extra dependencies.

Damaged files. By default a build stops at the first damaged or inconsistent file with a
DatasetFileError naming it, and leaves nothing that loads. With `skip_corrupt=True` (a
builder kwarg, which `prepare` and the run spec's skip_corrupt pass on) the build logs
each such file, leaves its example out, and records the list and the count in the
dataset's `info.metadata` ('skipped_count', 'skipped'; metadata.json on disk). A kwarg,
not a builder config: configs name what a dataset holds and where it lives, and a skipped
build is the same dataset with fewer examples, marked as such. The stock `tfds build`
command cannot pass builder kwargs, so it always builds strictly.
"""

import os
from pathlib import Path

from absl import logging
import tensorflow_datasets as tfds

from skinjax.data import threads
from skinjax.data.catalog import DATASET_NAMES
from skinjax.data.image_files import DatasetFileError


class DatasetNotBuilt(FileNotFoundError):
  """A dataset asked for is not prepared in the data directory, and no download was given."""


def datasets_dir() -> Path:
  """The repository's `datasets/` folder ($SKINJAX_DATASETS_DIR overrides it)."""
  configured = os.environ.get('SKINJAX_DATASETS_DIR')
  folder = Path(configured) if configured else Path(__file__).resolve().parents[2] / 'datasets'
  if not (folder / 'ham10000').is_dir():
    raise FileNotFoundError(f'{folder}: no dataset builder folders here; set '
                            'SKINJAX_DATASETS_DIR to the repository\'s datasets/ folder')
  return folder


def builder_class(name: str):
  """The `Builder` class of datasets/<name>/<name>_dataset_builder.py."""
  if name not in DATASET_NAMES:
    raise ValueError(f'unknown dataset {name!r}; known datasets: {", ".join(DATASET_NAMES)}')
  # As `tfds build` does: import `<name>.<name>_dataset_builder` from the folder above.
  with tfds.core.utils.add_sys_path(datasets_dir()):
    return tfds.core.community.builder_cls_from_module(f'{name}.{name}_dataset_builder')


def prepare(name: str, *, data_dir: str, manual_dir: str | None = None,
            config: str | None = None, skip_corrupt: bool = False):
  """Builds dataset `name` (config `config`) into `data_dir` if not built yet.

  Returns the prepared builder. A build that fails leaves only TFDS's `.incomplete`
  temporary folder, which never loads as a dataset. skip_corrupt: leave damaged files out
  (see the module docstring); without it, a dataset an earlier build made that way is
  refused, so a partial dataset never stands in for the complete one.
  """
  cls = builder_class(name)
  # A dataset already prepared is read in the format it was written in (the stock `tfds
  # build` writes tfrecord); a new one is written as array_record, for random access.
  builder = cls(data_dir=data_dir, config=config, skip_corrupt=skip_corrupt)
  if not builder.is_prepared():
    if manual_dir is None:
      raise DatasetNotBuilt(f'dataset {builder.info.full_name} is not built in {data_dir}; '
                            'give --manual_dir, the folder with the downloaded files')
    if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
      raise DatasetFileError(f'--manual_dir={manual_dir}: empty or missing; expected the '
                             f'{name} download in its public layout (datasets/{name}/README.md)')
    builder = cls(data_dir=data_dir, config=config, file_format='array_record',
                  skip_corrupt=skip_corrupt)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  _refuse_skipped(builder, skip_corrupt)
  return builder


def _refuse_skipped(builder, skip_corrupt: bool):
  """A dataset built leaving damaged files out is used only when asked for."""
  skipped = skipped_count(builder)
  if skipped and not skip_corrupt:
    raise DatasetFileError(
        f'{builder.data_path}: {builder.info.full_name} was built skipping damaged files '
        f'(--config.skip_corrupt) and leaves out {skipped} (listed in its metadata.json); '
        'pass --config.skip_corrupt=True to use it as it is, or mend the files and delete '
        'that folder to rebuild it complete')


def reopen(full_name: str, *, data_dirs, manual_dir: str | None = None,
           skip_corrupt: bool = False):
  """The prepared dataset `full_name` (e.g. 'ham10000/images/1.0.0': the one a run trained
  on), from the first of `data_dirs` that holds it, whatever version this code builds.

  Where none holds it, it is built into data_dirs[0] only if this code builds that very
  version (another version may split otherwise); else DatasetNotBuilt says so.
  """
  data_dirs = list(dict.fromkeys(data_dirs))
  for data_dir in data_dirs:
    path = Path(data_dir) / full_name
    if (path / 'dataset_info.json').exists():
      builder = tfds.builder_from_directory(str(path))
      _refuse_skipped(builder, skip_corrupt)
      return builder
  name, *config, version = full_name.split('/')
  current = builder_class(name).VERSION
  if str(current) != version:
    raise DatasetNotBuilt(
        f'{full_name} is not prepared in {" or ".join(data_dirs)}, and this code builds '
        f'{name} {current}, whose splits may differ; give the --data_dir that holds {full_name}')
  return prepare(name, data_dir=data_dirs[0], manual_dir=manual_dir,
                 config=config[0] if config else None, skip_corrupt=skip_corrupt)


def skipped_count(builder) -> int:
  """How many damaged files the prepared dataset of `builder` left out (0: none, or a
  dataset built before skipping existed)."""
  metadata = builder.info.metadata
  return int(metadata.get('skipped_count', 0)) if metadata is not None else 0


class SkipsDamagedFiles:
  """Mixin for the GeneratorBasedBuilders of datasets/: the `skip_corrupt` kwarg and what
  it does (module docstring). The builder's `_info` must give `metadata=MetadataDict()`."""

  def __init__(self, *, skip_corrupt: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.skip_corrupt = bool(skip_corrupt)
    self._original_state['skip_corrupt'] = self.skip_corrupt  # pickled builders keep it
    self._skipped: list[str] = []

  def damaged(self, error: DatasetFileError):
    """Raises `error`, or under skip_corrupt logs and records it (the caller leaves the
    example out). Safe to call from several threads."""
    if not self.skip_corrupt:
      raise error
    logging.warning('%s: skipping a damaged file: %s', self.name, error)
    self._skipped.append(str(error))

  def examples_without_damaged(self, example, items):
    """Yields example(item) for each item, computed in threads, in order; an item whose
    example raises DatasetFileError goes to `damaged`."""
    def guarded(item):
      try:
        return example(item)
      except DatasetFileError as error:
        self.damaged(error)
        return None

    yield from (result for result in threads.map_in_threads(guarded, items)
                if result is not None)

  def _download_and_prepare(self, dl_manager, download_config):
    self._skipped = []
    super()._download_and_prepare(dl_manager, download_config)
    # The splits are written; the info (and its metadata) is written after this returns.
    self.info.metadata.update(skip_corrupt=self.skip_corrupt,
                              skipped_count=len(self._skipped), skipped=sorted(self._skipped))
    if self._skipped:
      logging.warning('%s: left out %d damaged file(s):\n  %s', self.info.full_name,
                      len(self._skipped), '\n  '.join(sorted(self._skipped)))
