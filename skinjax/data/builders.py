"""Loads the TFDS builders of `datasets/` by path and prepares them from a manual directory.

The stock command does the same: `tfds build datasets/ham10000 --manual_dir=...`. This
module lets launchers and tests build through the Python API, without the tfds CLI's
extra dependencies.
"""

import os
from pathlib import Path

import tensorflow_datasets as tfds

DATASET_NAMES = ('ham10000', 'ph2', 'isic9')


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
            config: str | None = None):
  """Builds dataset `name` (config `config`) into `data_dir` if not built yet.

  Returns the prepared builder. A build that fails leaves only TFDS's `.incomplete`
  temporary folder, which never loads as a dataset.
  """
  builder = builder_class(name)(data_dir=data_dir, config=config, file_format='array_record')
  if not builder.is_prepared():
    if manual_dir is None:
      raise ValueError(f'dataset {builder.info.full_name} is not built in {data_dir}; '
                       'give --manual_dir, the folder with the downloaded files')
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder
