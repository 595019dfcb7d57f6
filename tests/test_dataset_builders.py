"""The TFDS builders read the public layouts: real samples in ../shared/data, and damaged
or incomplete folders fail with errors that name the file, leaving nothing that loads."""

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from skinjax.data import builders, synthetic
from skinjax.data.image_files import DatasetFileError

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('SKINJAX_SHARED_DATA', REPO.parent / 'shared' / 'data'))
needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / 'HAM10000').is_dir(),
    reason=f'real dataset samples not found at {SHARED_DATA} (set SKINJAX_SHARED_DATA)')
SKIP_IMAGES = {'image': tfds.decode.SkipDecoding(), 'mask': tfds.decode.SkipDecoding()}

tfds.disable_progress_bar()


@pytest.fixture(scope='module')
def real_ham10000(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  return builders.prepare('ham10000', data_dir=str(data_dir),
                          manual_dir=str(SHARED_DATA / 'HAM10000'), config='with_masks')


# The whole HAM10000 with its masks (10,015 images, grouped by lesion and by copies, crops
# included) takes minutes to build on 2 cores: test-slow. make test builds the real ISIC9
# (tests/test_copies_in_builders.py) and the real samples.
@needs_shared_data
@pytest.mark.slow
def test_ham10000_has_every_image_with_the_published_label_counts(real_ham10000):
  counts, lesions = collections.Counter(), {}
  names = real_ham10000.info.features['label'].names
  for split, source in real_ham10000.as_data_source(decoders=SKIP_IMAGES).items():
    lesions[split] = set()
    for i in range(len(source)):
      example = source[i]
      counts[names[example['label']]] += 1
      lesions[split].add(example['lesion_id'])
  assert sum(counts.values()) == 10_015
  assert counts == {'nv': 6705, 'mel': 1113, 'bkl': 1099, 'bcc': 514, 'akiec': 327,
                    'vasc': 142, 'df': 115}
  assert len(set.union(*lesions.values())) == 7_470
  # Grouped by lesion: no lesion in two splits, and 70/10/20 of the groups (lesions,
  # joined where copies of an image are filed under two: 5,229/747/1,494 without).
  assert sum(len(ids) for ids in lesions.values()) == 7_470
  assert {split: len(ids) for split, ids in lesions.items()} == {
      'train': 5228, 'validation': 747, 'test': 1495}


@needs_shared_data
@pytest.mark.slow
def test_ham10000_masks_are_binary_and_resized_to_their_images(real_ham10000):
  source = real_ham10000.as_data_source(split='test')
  for i in range(0, len(source), 250):
    example = source[i]
    assert example['mask'].shape[:2] == example['image'].shape[:2] == (150, 200)
    assert set(np.unique(example['mask'])) <= {0, 1}


@needs_shared_data
def test_ph2_sample_gives_12_cases_4_per_diagnosis_with_matching_binary_masks(tmp_path):
  builder = builders.prepare('ph2', data_dir=str(tmp_path),
                             manual_dir=str(SHARED_DATA / 'PH2-sample'))
  names = builder.info.features['label'].names
  examples = [source[i] for source in builder.as_data_source().values()
              for i in range(len(source))]
  assert len(examples) == 12
  assert collections.Counter(names[e['label']] for e in examples) == {
      'common_nevus': 4, 'atypical_nevus': 4, 'melanoma': 4}
  for example in examples:
    image, mask = example['image'], example['mask']
    assert mask.shape == image.shape[:2] + (1,)
    assert set(np.unique(mask)) == {0, 1}
  # IMD002's mask is a top-down BMP: read upside down it would miss its (dark) lesion,
  # which sits in the lower part of the image.
  imd002 = next(e for e in examples if e['image_id'] == b'IMD002')
  luminance, lesion = imd002['image'].mean(axis=-1), imd002['mask'][..., 0] == 1
  flipped = np.flipud(lesion)
  # Measured: 126 where only the mask is, 152 where only its mirror image is.
  assert luminance[lesion & ~flipped].mean() < luminance[flipped & ~lesion].mean() - 15


@needs_shared_data
@pytest.mark.parametrize('config,expected', [
    ('all9', {name: 4 for name in synthetic.ISIC9_CLASSES}),
    ('benign_malignant', {'benign': 24, 'malignant': 12}),
])
def test_isic9_sample_gives_36_images(tmp_path, config, expected):
  builder = builders.prepare('isic9', data_dir=str(tmp_path), config=config,
                             manual_dir=str(SHARED_DATA / 'ISIC9-sample'))
  names = builder.info.features['label'].names
  skip = {'image': tfds.decode.SkipDecoding()}
  labels = [names[source[i]['label']]
            for source in builder.as_data_source(decoders=skip).values()
            for i in range(len(source))]
  assert collections.Counter(labels) == expected


@needs_shared_data
def test_the_stock_tfds_build_command_builds_a_builder_folder(tmp_path):
  tfds_command = Path(sys.executable).parent / 'tfds'
  result = subprocess.run(
      [str(tfds_command), 'build', str(REPO / 'datasets' / 'ph2'),
       f'--manual_dir={SHARED_DATA / "PH2-sample"}', f'--data_dir={tmp_path}'],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  builder = tfds.builder_from_directory(str(tmp_path / 'ph2' / '1.0.0'))
  assert builder.info.splits.total_num_examples == 12


# Damaged and incomplete layouts, made from small synthetic ones.

@pytest.fixture
def small_ham(tmp_path):
  return synthetic.write_ham10000(tmp_path / 'HAM10000', lesions_per_class={
      name: 2 for name in synthetic.HAM10000_CLASSES}, image_size=(40, 30), max_views=1)


def build_fails(name, manual_dir, data_dir, match, config=None):
  with pytest.raises(DatasetFileError, match=match):
    builders.prepare(name, data_dir=str(data_dir), manual_dir=str(manual_dir), config=config)
  # Nothing that loads as a dataset is left behind.
  assert not builders.builder_class(name)(data_dir=str(data_dir), config=config).is_prepared()


def first_image(manual_dir):
  return sorted((manual_dir / 'HAM10000_images_part_1').iterdir())[0]


def test_missing_metadata_is_named(small_ham, tmp_path):
  (small_ham / 'HAM10000_metadata.csv').unlink()
  build_fails('ham10000', small_ham, tmp_path / 'out', r'HAM10000_metadata\.csv: not found')


def test_an_image_listed_but_absent_is_named(small_ham, tmp_path):
  missing = first_image(small_ham)
  missing.unlink()
  build_fails('ham10000', small_ham, tmp_path / 'out',
              rf'lists image {missing.stem}, but no {missing.stem}\.jpg is in')


@pytest.mark.parametrize('damage', ['truncated', 'not_an_image', 'empty'])
def test_a_damaged_image_is_named_and_nothing_half_built_remains(small_ham, tmp_path, damage):
  victim = first_image(small_ham)
  data = victim.read_bytes()
  victim.write_bytes({'truncated': data[:len(data) // 2], 'not_an_image': b'id,dx\n1,nv\n',
                      'empty': b''}[damage])
  out = tmp_path / 'out'
  build_fails('ham10000', small_ham, out, rf'{victim.name}: not a readable image')
  # Once mended, the same data_dir builds and loads.
  victim.write_bytes(data)
  builder = builders.prepare('ham10000', data_dir=str(out), manual_dir=str(small_ham))
  assert builder.info.splits.total_num_examples == 14


def test_an_unknown_diagnosis_in_the_csv_is_named(small_ham, tmp_path):
  path = small_ham / 'HAM10000_metadata.csv'
  lines = path.read_text().splitlines()
  fields = lines[3].split(',')
  fields[2] = 'melanoma'
  lines[3] = ','.join(fields)
  path.write_text('\n'.join(lines) + '\n')
  build_fails('ham10000', small_ham, tmp_path / 'out',
              r"line 4: unknown diagnosis 'melanoma'.*expected one of akiec")


def test_a_csv_without_a_column_is_refused(small_ham, tmp_path):
  path = small_ham / 'HAM10000_metadata.csv'
  lines = path.read_text().splitlines()
  path.write_text('\n'.join(line.rsplit(',', 1)[0] for line in lines) + '\n')
  build_fails('ham10000', small_ham, tmp_path / 'out', r"missing column\(s\) \['localization'\]")


def test_images_read_from_the_original_zip_files(small_ham, tmp_path):
  for part in ('HAM10000_images_part_1', 'HAM10000_images_part_2'):
    shutil.make_archive(str(small_ham / part), 'zip', small_ham / part)
    shutil.rmtree(small_ham / part)
  builder = builders.prepare('ham10000', data_dir=str(tmp_path / 'out'),
                             manual_dir=str(small_ham))
  assert builder.info.splits.total_num_examples == 14


def test_a_ph2_mask_of_another_size_is_refused(tmp_path):
  manual = synthetic.write_ph2(tmp_path / 'PH2', cases_per_class={
      name: 1 for name in synthetic.PH2_CLASSES}, image_size=(64, 48))
  mask = next((manual / 'PH2 Dataset images').glob('*/*_lesion/*_lesion.bmp'))
  from PIL import Image
  Image.new('1', (60, 60)).save(mask)
  build_fails('ph2', manual, tmp_path / 'out', rf'{mask.name}: mask is 60x60, expected the '
              r'size of its image, 64x48')


def test_an_unknown_isic_class_folder_is_named(tmp_path):
  manual = synthetic.write_isic9(tmp_path / 'ISIC9', train_per_class=1, test_per_class=1,
                                 image_size=(32, 32))
  train = manual / synthetic.ISIC9_ROOT / 'Train'
  (train / 'nevus').rename(train / 'naevus')
  build_fails('isic9', manual, tmp_path / 'out',
              r'naevus: unknown class folder; expected only these nine: actinic keratosis',
              config='all9')
