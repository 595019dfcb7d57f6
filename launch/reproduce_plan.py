"""What `make reproduce` runs at each scale: the rows of the papers' tables, each a
training command (launch/train.py with a config and its overrides) and the evaluations
that follow it (launch/evaluate.py on another dataset).

Scales:
  tiny   the synthetic layouts (skinjax.data.synthetic), a few steps per run: CI's check
         that every row still runs and that its table renders.
  cpu    the real data, sized for 2 CPU cores (about 8 hours in all); where a paper's
         scale does not fit, the row says what changed.
  paper  the papers' own settings, for an accelerator machine with the data at hand.

A run's name is its identity: the command recorded in its summary is compared with the
plan's at every start, so changing a row here reruns it.
"""

import dataclasses

SCALES = ('tiny', 'cpu', 'paper')


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """launch/evaluate.py on another dataset after training (its report is kept too)."""

  dataset: str
  folders: tuple[str, ...]  # under --data_root, the dataset's download: the first found
  split: str = 'all'

  @property
  def report(self) -> str:
    return f'{self.dataset}-{self.split}'


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  table: str  # the block of RESULTS.md it feeds
  row: str  # the row it is a seed of
  config: str  # launch/configs/<config>.py
  folders: tuple[str, ...]  # the training dataset's download under --data_root: the first found
  overrides: tuple[tuple[str, object], ...]  # --config.<key>=<value>, in order
  seed: int
  evaluations: tuple[Evaluation, ...] = ()

  def arguments(self) -> list[str]:
    return [f'--config.{key}={value}' for key, value in self.overrides] + [
        f'--config.seed={self.seed}']


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a table: the runs of its seeds share everything else."""

  table: str
  key: str
  label: str  # what the row is, as the table shows it
  paper: str = ''  # the paper's figure for this row, '' where it reports none


@dataclasses.dataclass(frozen=True)
class ScaleSettings:
  seeds: tuple[int, ...]  # of the headline rows; the others run the first
  classifier: tuple[tuple[str, object], ...]  # DeepConvNet's changes from its config
  segmenter: tuple[tuple[str, object], ...]  # U-Net's changes from its config
  note: str  # what this scale changes from the papers, for the tables' captions


SETTINGS = {
    'tiny': ScaleSettings(
        seeds=(0, 1),
        classifier=(('phases[0].epochs', 1), ('batch_size', 16)),
        segmenter=(('model', 'unet_tiny'), ('image_size', 32), ('phases[0].epochs', 1),
                   ('batch_size', 4), ('eval_batch_size', 4)),
        note='synthetic layouts, 1 epoch per run, U-Net unet_tiny at 32x32: a check that '
             'every row runs, not a result'),
    'cpu': ScaleSettings(
        seeds=(0, 1, 2),
        classifier=(),
        segmenter=(('model', 'unet_small'), ('image_size', 64), ('phases[0].epochs', 10)),
        note="DeepConvNet at paper 1's scale (28x28, batch 64, 20 epochs); U-Net at base "
             'width 16 (paper: 64), 64x64 (paper: 224), 10 epochs (paper: 100), to fit 2 CPU '
             'cores'),
    'paper': ScaleSettings(
        seeds=(0, 1, 2), classifier=(), segmenter=(),
        note="the papers' settings (launch/configs/ as they are)"),
}

# Paper 1, Table 6: DeepConvNet at 28x28. (key, label, overrides, headline, paper figure).
TABLE6 = (
    ('paper_aug', 'paper protocol (duplicate, then split 80/20), augmentation on',
     (('split_protocol', 'paper'),), True, '97.2'),
    ('paper_noaug', 'paper protocol, augmentation off',
     (('split_protocol', 'paper'), ('augment', 'none')), False, ''),
    ('lesion_duplication', "lesion protocol (split lesions 70/10/20), paper 1's duplication "
     'of the train split', (('split_protocol', 'lesion'),), True, ''),
    ('lesion_class_weights', 'lesion protocol, class-weighted loss instead of duplication',
     (('split_protocol', 'lesion'), ('balance', 'class_weights')), False, ''),
    ('lesion_none', 'lesion protocol, no class balancing',
     (('split_protocol', 'lesion'), ('balance', 'none')), False, ''),
)


def rows() -> list[Row]:
  return [Row('table6', key, label, paper) for key, label, _, _, paper in TABLE6] + [
      Row('table8', 'unet_ham10000', "U-Net on HAM10000's masks, lesion protocol", '')]


HAM10000 = ('HAM10000',)
PH2 = ('PH2', 'PH2-sample')


def runs(scale: str) -> list[Run]:
  """Every run of `scale`, in the order they run: each row's first seed, then the other
  seeds of the headline rows (so that an interrupted plan has every row once first)."""
  settings = SETTINGS[scale]
  plan = []
  for key, _, overrides, headline, _ in TABLE6:
    for seed in settings.seeds if headline else settings.seeds[:1]:
      plan.append(Run(f'dcn_{key}_s{seed}', 'table6', key, 'deepconvnet_ham10000', HAM10000,
                      overrides + settings.classifier, seed))
  plan.append(Run('unet_ham10000_s0', 'table8', 'unet_ham10000', 'unet_ham10000', HAM10000,
                  settings.segmenter, 0, evaluations=(Evaluation('ph2', PH2),)))
  return sorted(plan, key=lambda run: run.seed != settings.seeds[0])  # stable: rows in order
