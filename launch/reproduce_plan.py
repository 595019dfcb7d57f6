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
  """launch/evaluate.py after training: on another dataset, or on the run's own split cut
  to the lesions another run (a segmenter) finds (its report is kept too)."""

  dataset: str | None  # None: the run's own data
  folders: tuple[str, ...]  # under --data_root, the dataset's download: the first found
  split: str = 'all'
  crop_with: str = ''  # a segmenter run of the plan, for lesion crops
  kmeans: bool = False  # a segmenter's: k-means scored on the same images too

  @property
  def report(self) -> str:
    """The report folder it writes (report/<report>/ in the run's workdir)."""
    if self.crop_with:
      return f'{self.split}-lesion_crops'
    return self.split if self.dataset is None else f'{self.dataset}-{self.split}'

  @property
  def identity(self) -> str:
    return self.report + ('+kmeans' if self.kmeans else '')


BACKBONE = 'backbone'  # the folder of a run's exported backbone, in its workdir


def backbone_of(run_name: str) -> str:
  """An override value that stands for `run_name`'s exported backbone (launch/reproduce.py
  puts the folder in its place)."""
  return f'{{{BACKBONE}:{run_name}}}'


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
  overlap_folders: tuple[str, ...] = ()  # --overlap_manual_dir's download, if it needs one
  export_backbone: bool = False  # launch/export_backbone.py after training

  def arguments(self) -> list[str]:
    return [f'--config.{key}={value}' for key, value in self.overrides] + [
        f'--config.seed={self.seed}']

  @property
  def needs(self) -> tuple[str, ...]:
    """The runs this one uses: exported backbones it starts from, segmenters it crops with."""
    prefix = f'{{{BACKBONE}:'
    return tuple(str(value)[len(prefix):-1] for _, value in self.overrides
                 if str(value).startswith(prefix)) + tuple(
        evaluation.crop_with for evaluation in self.evaluations if evaluation.crop_with)


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a table: the runs of its seeds share everything else."""

  table: str
  key: str
  label: str  # what the row is, as the table shows it (the papers' own figures are
  # reproduce_tables.PUBLISHED_*)


@dataclasses.dataclass(frozen=True)
class ScaleSettings:
  seeds: tuple[int, ...]  # of the headline rows; the others run the first
  classifier: tuple[tuple[str, object], ...]  # DeepConvNet's changes from its config
  segmenter: tuple[tuple[str, object], ...]  # U-Net's changes from its config
  b3: tuple[tuple[str, object], ...]  # paper 2's runs' changes from their configs
  b3_pretraining: tuple[tuple[str, object], ...]  # the HAM10000 pretraining's
  note: str  # what this scale changes from the papers, for the tables' captions
  # The comparison networks run at this scale (keys of COMPARISON_MODELS), and the model
  # each runs as (the tiny scale's reduced variants).
  paper1_comparisons: tuple[str, ...] = ()
  paper2_comparisons: tuple[str, ...] = ()
  comparison_models: dict = dataclasses.field(default_factory=dict)


# The comparison networks (issue 16), each under paper 2's head: paper 1's Table 6 ones on
# HAM10000 as its DeepConvNet trains (launch/configs/comparison_ham10000.py, at Keras'
# smallest input), paper 2's Table I ones on ISIC9 as its B3 trains (the same config and
# chain: HAM10000 pretraining, then all nine classes under the grouped protocol).
# network -> (label, Keras' smallest input).
PAPER1_COMPARISONS = {'vgg16': ('VGG16', 32), 'resnet50': ('ResNet50', 32),
                      'inceptionv3': ('InceptionV3', 75), 'xception': ('Xception', 71)}
PAPER2_COMPARISONS = {'resnet50': 'ResNet50', 'resnet50v2': 'ResNet50V2',
                      'mobilenet': 'MobileNet', 'mobilenetv2': 'MobileNetV2',
                      'efficientnet_b3': 'EfficientNetB3'}


def comparison_model(settings, network: str) -> str:
  return settings.comparison_models.get(network, f'{network}_skin')


SETTINGS = {
    'tiny': ScaleSettings(
        seeds=(0, 1),
        classifier=(('phases[0].epochs', 1), ('batch_size', 16)),
        segmenter=(('model', 'unet_tiny'), ('image_size', 32), ('phases[0].epochs', 1),
                   ('batch_size', 4), ('eval_batch_size', 4)),
        b3=(('model', 'efficientnetv2_tiny_skin'), ('image_size', 32), ('phases[0].epochs', 1),
            ('phases[1].epochs', 1), ('batch_size', 8), ('eval_batch_size', 8)),
        b3_pretraining=(('model', 'efficientnetv2_tiny_skin'), ('image_size', 32),
                        ('phases[0].epochs', 1), ('batch_size', 16)),
        note='synthetic layouts, 1 epoch per run (per phase), U-Net unet_tiny at 32x32, '
             "EfficientNetV2's tiny variant at 32x32: a check that every row runs, not a "
             'result; the comparison networks as their tiny variants',
        paper1_comparisons=('vgg16', 'xception'), paper2_comparisons=('mobilenetv2',),
        comparison_models={'vgg16': 'vgg16_tiny_skin', 'xception': 'xception_tiny_skin',
                           'mobilenetv2': 'mobilenetv2_tiny_skin'}),
    'cpu': ScaleSettings(
        seeds=(0, 1, 2),
        classifier=(),
        segmenter=(('model', 'unet_small'), ('image_size', 64), ('phases[0].epochs', 10)),
        b3=(('image_size', 96), ('phases[0].epochs', 5), ('phases[1].epochs', 5)),
        b3_pretraining=(('image_size', 96), ('phases[0].epochs', 5)),
        note="DeepConvNet at paper 1's scale (28x28, batch 64, 20 epochs); U-Net at base "
             'width 16 (paper: 64), 64x64 (paper: 224), 10 epochs (paper: 100); B3 at 96x96 '
             '(paper: 300), 5 + 5 epochs (ours at the paper scale: 10 + 10) and 5 epochs '
             'of HAM10000 pretraining (10), to fit 2 CPU cores; of the comparison '
             'networks only ResNet50 and MobileNetV2 on all nine classes, as B3 is',
        paper2_comparisons=('resnet50', 'mobilenetv2')),
    'paper': ScaleSettings(
        seeds=(0, 1, 2), classifier=(), segmenter=(), b3=(), b3_pretraining=(),
        note="the papers' settings (launch/configs/ as they are)",
        paper1_comparisons=tuple(PAPER1_COMPARISONS), paper2_comparisons=tuple(
            PAPER2_COMPARISONS)),
}

# Paper 1, Table 6: DeepConvNet at 28x28. (key, label, overrides, headline).
TABLE6 = (
    ('paper_aug', 'paper protocol (duplicate, then split 80/20), augmentation on',
     (('split_protocol', 'paper'),), True),
    ('paper_noaug', 'paper protocol, augmentation off',
     (('split_protocol', 'paper'), ('augment', 'none')), False),
    ('lesion_duplication', "lesion protocol (split lesions 70/10/20), paper 1's duplication "
     'of the train split', (('split_protocol', 'lesion'),), True),
    ('lesion_class_weights', 'lesion protocol, class-weighted loss instead of duplication',
     (('split_protocol', 'lesion'), ('balance', 'class_weights')), False),
    ('lesion_none', 'lesion protocol, no class balancing',
     (('split_protocol', 'lesion'), ('balance', 'none')), False),
)


# Paper 2, Tables I-IV: EfficientNetV2-B3 + its head, two phases. No ImageNet weights reach
# this machine, so the starts are (a) random and (b) a backbone pretrained on HAM10000
# without ISIC9's validation and test images. (key, scenario, start, protocol).
PAPER2_STARTS = {'scratch': 'random initialisation',
                 'ham10000': 'HAM10000-pretrained backbone (ISIC9 validation and test left out)'}
PAPER2_PROTOCOLS = {'paper': "paper 2's split by file (copies across splits)",
                    'grouped': 'copies and near-duplicates grouped, label conflicts left out'}
TABLE_PAPER2 = (
    ('all9', 'scratch', 'paper'), ('all9', 'scratch', 'grouped'),
    ('all9', 'ham10000', 'paper'), ('all9', 'ham10000', 'grouped'),
    ('benign_malignant', 'ham10000', 'grouped'), ('benign6', 'ham10000', 'grouped'),
    ('malignant3', 'ham10000', 'grouped'),
)


def paper2_key(scenario, start, protocol) -> str:
  return f'{scenario}_{start}_{protocol}'


def rows() -> list[Row]:
  return [Row('table6', key, label) for key, label, _, _ in TABLE6] + [
      Row('table8', 'unet_ham10000', "U-Net on HAM10000's masks, lesion protocol"),
      Row('fig17', 'lesion_crops', "DeepConvNet, lesion protocol, paper 1's duplication"),
      Row('fig17', 'trained_on_crops', 'the same, trained on lesion crops (cut by the '
          'ground-truth masks)')
  ] + [
      Row('paper2', paper2_key(*entry), f'{entry[0]}: {PAPER2_STARTS[entry[1]]}; '
          f'{PAPER2_PROTOCOLS[entry[2]]}')
      for entry in TABLE_PAPER2] + [
      Row('pretraining', f'b3_ham10000_{protocol}', 'B3 on HAM10000 (lesion protocol), '
          f'leaving out the validation and test images of isic9/{config}')
      for protocol, config in (('grouped', 'all9'), ('paper', 'all9_paper'))] + [
      Row('comparisons', f'paper1_{network}', f'{label}: paper 1, Table 6 (HAM10000, '
          "paper protocol, as its DeepConvNet)")
      for network, (label, _) in PAPER1_COMPARISONS.items()] + [
      Row('comparisons', f'paper2_{network}', f'{label}: paper 2, Table I (all nine classes, '
          'HAM10000-pretrained, grouped, as its B3)')
      for network, label in PAPER2_COMPARISONS.items()] + [
      Row('pretraining', f'{network}_ham10000_grouped', f'{label} on HAM10000 (lesion '
          'protocol), leaving out the validation and test images of isic9/all9')
      for network, label in PAPER2_COMPARISONS.items()]


HAM10000 = ('HAM10000',)
PH2 = ('PH2', 'PH2-sample')
ISIC9 = ('ISIC9',)


def runs(scale: str) -> list[Run]:
  """Every run of `scale`, in the order they run: each row's first seed, then the other
  seeds of the headline rows (so that an interrupted plan has every row once first)."""
  settings = SETTINGS[scale]
  plan = []
  for key, _, overrides, headline in TABLE6:
    for seed in settings.seeds if headline else settings.seeds[:1]:
      plan.append(Run(f'dcn_{key}_s{seed}', 'table6', key, 'deepconvnet_ham10000', HAM10000,
                      overrides + settings.classifier, seed))
  plan.append(Run('unet_ham10000_s0', 'table8', 'unet_ham10000', 'unet_ham10000', HAM10000,
                  settings.segmenter, 0,
                  evaluations=(Evaluation(None, (), 'test', kmeans=True),
                               Evaluation('ph2', PH2, kmeans=True))))
  # Fig. 17: one classifier (paper 1's, lesion protocol) scored on whole test images and on
  # the U-Net's lesion crops of them.
  plan.append(Run('dcn_lesion_crops_s0', 'fig17', 'lesion_crops', 'deepconvnet_ham10000',
                  HAM10000, (('split_protocol', 'lesion'),) + settings.classifier, 0,
                  evaluations=(Evaluation(None, (), 'test', crop_with='unet_ham10000_s0'),)))
  # ... and a classifier trained on crops (cut by HAM10000's ground-truth masks).
  plan.append(Run('dcn_trained_on_crops_s0', 'fig17', 'trained_on_crops',
                  'deepconvnet_ham10000', HAM10000,
                  (('split_protocol', 'lesion'), ('dataset_config', 'with_masks'),
                   ('crop_to_lesion', True)) + settings.classifier, 0,
                  evaluations=(Evaluation(None, (), 'test', crop_with='unet_ham10000_s0'),)))
  for protocol, config in (('grouped', 'all9'), ('paper', 'all9_paper')):
    plan.append(Run(f'b3_ham10000_{protocol}_s0', 'pretraining', f'b3_ham10000_{protocol}',
                    'efficientnetv2_b3_ham10000', HAM10000,
                    (('exclude_overlap_with', f'isic9/{config}'),) + settings.b3_pretraining, 0,
                    overlap_folders=ISIC9, export_backbone=True))
  for scenario, start, protocol in TABLE_PAPER2:
    config = scenario + ('_paper' if protocol == 'paper' else '')
    init = ((('init_from', backbone_of(f'b3_ham10000_{protocol}_s0')),)
            if start == 'ham10000' else ())
    key = paper2_key(scenario, start, protocol)
    plan.append(Run(f'b3_{key}_s0', 'paper2', key, 'efficientnetv2_b3_isic9', ISIC9,
                    (('dataset_config', config),) + init + settings.b3, 0))
  for network in settings.paper1_comparisons:
    model = comparison_model(settings, network)
    size = PAPER1_COMPARISONS[network][1]
    plan.append(Run(f'{network}_paper1_s0', 'comparisons', f'paper1_{network}',
                    'comparison_ham10000', HAM10000,
                    (('model', model), ('image_size', size), ('split_protocol', 'paper'))
                    + settings.classifier, 0))
  for network in settings.paper2_comparisons:
    model = comparison_model(settings, network)
    pretraining = f'{network}_ham10000_grouped_s0'
    plan.append(Run(pretraining, 'pretraining', f'{network}_ham10000_grouped',
                    'efficientnetv2_b3_ham10000', HAM10000,
                    (('exclude_overlap_with', 'isic9/all9'),) + settings.b3_pretraining
                    + (('model', model),), 0, overlap_folders=ISIC9, export_backbone=True))
    plan.append(Run(f'{network}_all9_ham10000_grouped_s0', 'comparisons', f'paper2_{network}',
                    'efficientnetv2_b3_isic9', ISIC9,
                    (('dataset_config', 'all9'), ('init_from', backbone_of(pretraining)))
                    + settings.b3 + (('model', model),), 0))
  return sorted(plan, key=lambda run: run.seed != settings.seeds[0])  # stable: rows in order
