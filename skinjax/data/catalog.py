"""What each dataset of `datasets/` offers, without importing TFDS: its configs and which
of them carry lesion masks. A run spec is checked against this before anything is built;
`tests/test_catalog.py` keeps it equal to the builders themselves."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
  """configs: the builder's config names, the default first ((): no configs).
  mask_configs: the configs whose examples carry a lesion mask (for a builder without
  configs, ('',) when its examples do)."""

  configs: tuple[str, ...]
  mask_configs: tuple[str, ...]

  def resolve(self, config: str) -> str:
    """The config a build uses for `config` ('' is the default one)."""
    return config or (self.configs[0] if self.configs else '')

  def has_masks(self, config: str) -> bool:
    return self.resolve(config) in self.mask_configs


DATASETS = {
    'ham10000': DatasetEntry(configs=('images', 'with_masks'), mask_configs=('with_masks',)),
    'ph2': DatasetEntry(configs=(), mask_configs=('',)),
    'isic9': DatasetEntry(configs=('all9', 'benign_malignant', 'benign6', 'malignant3',
                                   'all9_paper', 'benign_malignant_paper', 'benign6_paper',
                                   'malignant3_paper'),
                          mask_configs=()),
}
DATASET_NAMES = tuple(DATASETS)
