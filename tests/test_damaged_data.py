"""Damaged dataset files: a build stops with an error naming the file and what was expected,
or, with skip_corrupt, leaves the file's example out, logs it and counts it in the dataset
info; a dataset built that way never loads later as the complete one."""

import csv
import io
import logging
import os
import shutil
import sys
import zipfile
from pathlib import Path

from absl import flags
import numpy as np
import openpyxl
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from ml_collections import config_flags

from skinjax.data import builders, experiment_data, synthetic
from skinjax.data.image_files import DatasetFileError
from skinjax.train.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]

tfds.disable_progress_bar()
HAM_METADATA = 'HAM10000_metadata.csv'


def build_fails(name, manual_dir, data_dir, match, config=None, skip_corrupt=False):
  with pytest.raises(DatasetFileError, match=match):
    builders.prepare(name, data_dir=str(data_dir), manual_dir=str(manual_dir), config=config,
                     skip_corrupt=skip_corrupt)
  # Nothing that loads as a dataset is left behind.
  assert not builders.builder_class(name)(data_dir=str(data_dir), config=config).is_prepared()


def build_skipping(name, manual_dir, data_dir, config=None):
  """The builder prepared with skip_corrupt, and its metadata as read back from disk."""
  builder = builders.prepare(name, data_dir=str(data_dir), manual_dir=str(manual_dir),
                             config=config, skip_corrupt=True)
  on_disk = tfds.builder_from_directory(os.fspath(builder.data_path)).info.metadata
  return builder, dict(on_disk)


def image_ids(builder):
  skip = {'image': tfds.decode.SkipDecoding()}
  return {source[i]['image_id'].decode() for source in builder.as_data_source(
      decoders=skip).values() for i in range(len(source))}


def stored_image(builder, image_id):
  for source in builder.as_data_source().values():
    for i in range(len(source)):
      if source[i]['image_id'].decode() == image_id:
        return source[i]['image']
  raise KeyError(image_id)


def damage(path, how):
  data = path.read_bytes()
  path.write_bytes({'truncated': data[:len(data) // 2], 'empty': b'',
                    'not_an_image': b'lesion_id,image_id\nHAM_1,ISIC_1\n'}[how])


@pytest.fixture
def small_ham(tmp_path):
  """14 single-image lesions, 2 per class, 40x30 JPEGs with 3x larger PNG masks."""
  return synthetic.write_ham10000(tmp_path / 'HAM10000', lesions_per_class={
      name: 2 for name in synthetic.HAM10000_CLASSES}, image_size=(40, 30), mask_scale=3,
      max_views=1)


@pytest.fixture
def small_ph2(tmp_path):
  """15 cases, 5 per diagnosis, 64x48 BMPs."""
  return synthetic.write_ph2(tmp_path / 'PH2', cases_per_class={
      name: 5 for name in synthetic.PH2_CLASSES}, image_size=(64, 48))


def first_image(manual_dir):
  return sorted((manual_dir / 'HAM10000_images_part_1').iterdir())[0]


# HAM10000: images, masks, zips.

@pytest.mark.parametrize('how', ['truncated', 'empty', 'not_an_image'])
def test_a_damaged_jpeg_is_named_or_skipped_logged_and_counted(small_ham, tmp_path, how,
                                                                caplog):
  victim = first_image(small_ham)
  damage(victim, how)
  build_fails('ham10000', small_ham, tmp_path / 'strict',
              rf'{victim.name}: not a readable image .*expected a complete JPEG, PNG or BMP')
  with caplog.at_level(logging.WARNING):
    builder, metadata = build_skipping('ham10000', small_ham, tmp_path / 'skipping')
  assert builder.info.splits.total_num_examples == 13
  assert victim.stem not in image_ids(builder)
  assert metadata['skipped_count'] == 1
  assert metadata['skipped'][0].startswith(f'{victim}: not a readable image')
  assert f'left out 1 damaged file(s):\n  {victim}' in caplog.text


def test_a_dataset_built_skipping_files_never_loads_as_the_complete_one(small_ham, tmp_path):
  damage(first_image(small_ham), 'truncated')
  build_skipping('ham10000', small_ham, tmp_path / 'out')
  with pytest.raises(DatasetFileError, match=r'was built skipping damaged files '
                     r'\(--config.skip_corrupt\) and leaves out 1 .*pass '
                     r'--config.skip_corrupt=True'):
    builders.prepare('ham10000', data_dir=str(tmp_path / 'out'), manual_dir=str(small_ham))
  # With the flag it loads as it is, without building again.
  builder = builders.prepare('ham10000', data_dir=str(tmp_path / 'out'), skip_corrupt=True)
  assert builders.skipped_count(builder) == 1


def test_a_complete_dataset_records_that_nothing_was_skipped(small_ham, tmp_path):
  builder, metadata = build_skipping('ham10000', small_ham, tmp_path / 'out')
  assert builder.info.splits.total_num_examples == 14
  assert metadata == {'skip_corrupt': True, 'skipped_count': 0, 'skipped': []}
  # ...so it loads without the flag too.
  builders.prepare('ham10000', data_dir=str(tmp_path / 'out'))


def test_a_png_or_a_grayscale_jpeg_named_jpg_is_read_and_stored_as_rgb(small_ham, tmp_path):
  as_png, as_gray = sorted((small_ham / 'HAM10000_images_part_1').iterdir())[:2]
  pixels = np.asarray(Image.open(as_png))
  Image.fromarray(pixels).save(as_png, format='PNG')
  Image.open(as_gray).convert('L').save(as_gray, format='JPEG', quality=95)
  builder = builders.prepare('ham10000', data_dir=str(tmp_path / 'out'),
                             manual_dir=str(small_ham))
  assert builder.info.splits.total_num_examples == 14
  stored = stored_image(builder, as_png.stem)
  assert stored.shape == (30, 40, 3)
  assert np.abs(stored.astype(int) - pixels).mean() < 4  # re-encoded as JPEG
  gray = stored_image(builder, as_gray.stem)
  assert gray.shape == (30, 40, 3) and (gray[..., 0] == gray[..., 2]).mean() > 0.95


def test_a_damaged_mask_png_is_named_or_skipped(small_ham, tmp_path):
  mask = sorted((small_ham / 'HAM10000_segmentations_lesion_tschandl').iterdir())[0]
  damage(mask, 'truncated')
  build_fails('ham10000', small_ham, tmp_path / 'strict', rf'{mask.name}: not a readable image',
              config='with_masks')
  builder, metadata = build_skipping('ham10000', small_ham, tmp_path / 'skipping',
                                     config='with_masks')
  assert builder.info.splits.total_num_examples == 13
  assert metadata['skipped_count'] == 1 and mask.name in metadata['skipped'][0]


def test_a_damaged_zip_or_zip_member_is_named(small_ham, tmp_path):
  for part in ('HAM10000_images_part_1', 'HAM10000_images_part_2'):
    with zipfile.ZipFile(small_ham / f'{part}.zip', 'w', zipfile.ZIP_STORED) as archive:
      for path in sorted((small_ham / part).iterdir()):
        archive.write(path, f'{part}/{path.name}')
    shutil.rmtree(small_ham / part)
  # A flipped byte inside the first member's data: the zip's CRC check catches it.
  archive = small_ham / 'HAM10000_images_part_1.zip'
  data = bytearray(archive.read_bytes())
  with zipfile.ZipFile(archive) as opened:
    member = opened.infolist()[0]
  data[member.header_offset + 30 + len(member.filename) + 200] ^= 0xFF
  archive.write_bytes(bytes(data))
  build_fails('ham10000', small_ham, tmp_path / 'strict',
              rf'{member.filename}: cannot be read from the zip \(BadZipFile: Bad CRC-32')
  builder, metadata = build_skipping('ham10000', small_ham, tmp_path / 'skipping')
  assert builder.info.splits.total_num_examples == 13 and metadata['skipped_count'] == 1
  # A zip that is no zip at all cannot be skipped: it holds half the images.
  (small_ham / 'HAM10000_images_part_2.zip').write_bytes(b'not a zip')
  build_fails('ham10000', small_ham, tmp_path / 'strict', r'HAM10000_images_part_2\.zip: not '
              r'a readable zip file .*expected the HAM10000 download', skip_corrupt=True)


# HAM10000: the metadata CSV.

def edit_metadata(manual_dir, edit):
  path = manual_dir / HAM_METADATA
  rows = list(csv.reader(io.StringIO(path.read_text())))
  edit(rows)
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator='\n').writerows(rows)
  path.write_text(buffer.getvalue())


def set_field(column, value):
  def edit(rows):
    rows[3][rows[0].index(column)] = value
  return edit


ROW_FAULTS = {
    'unknown_diagnosis': (set_field('dx', 'melanoma'),
                          r"line 4: unknown diagnosis 'melanoma' for ISIC_\d+; expected one of "
                          'akiec'),
    'age_not_a_number': (set_field('age', 'forty'),
                         r"line 4: age 'forty' for ISIC_\d+; expected empty or a number"),
    'short_row': (lambda rows: rows[3].pop(), r'line 4: has 6 fields, expected 7 as in the '
                  'header'),
    'duplicate_image_id': (lambda rows: rows.append(list(rows[3])),
                           r'line 16: image ISIC_\d+ listed again \(first on line 4\)'),
}


@pytest.mark.parametrize('fault', sorted(ROW_FAULTS))
def test_a_bad_csv_row_is_named_by_line_or_skipped(small_ham, tmp_path, fault):
  edit, message = ROW_FAULTS[fault]
  edit_metadata(small_ham, edit)
  build_fails('ham10000', small_ham, tmp_path / 'strict', message)
  builder, metadata = build_skipping('ham10000', small_ham, tmp_path / 'skipping')
  # A duplicate row adds a row; the others lose one image.
  assert builder.info.splits.total_num_examples == (14 if fault == 'duplicate_image_id' else 13)
  assert metadata['skipped_count'] == 1
  assert metadata['skipped'][0].startswith(f'{small_ham / HAM_METADATA}, line ')


def test_a_csv_without_a_column_or_not_utf8_is_refused_even_when_skipping(small_ham, tmp_path):
  path = small_ham / HAM_METADATA
  original = path.read_bytes()
  edit_metadata(small_ham, lambda rows: [row.pop(2) for row in rows])  # dx
  build_fails('ham10000', small_ham, tmp_path / 'a', r"missing column\(s\) \['dx'\]; expected "
              'the header lesion_id,image_id,dx', skip_corrupt=True)
  path.write_bytes(original.replace(b'back', b'd\xe9colletage'))
  build_fails('ham10000', small_ham, tmp_path / 'b', rf'{HAM_METADATA}: not UTF-8 text',
              skip_corrupt=True)


def test_a_listed_image_that_is_absent_is_skipped(small_ham, tmp_path):
  missing = first_image(small_ham)
  missing.unlink()
  builder, metadata = build_skipping('ham10000', small_ham, tmp_path / 'out')
  assert builder.info.splits.total_num_examples == 13
  assert f'lists image {missing.stem}, but no {missing.stem}.jpg is in' in metadata['skipped'][0]


# PH2: BMPs and the .xlsx sheet.

@pytest.mark.parametrize('part,how', [('image', 'truncated'), ('mask', 'empty')])
def test_a_damaged_ph2_bmp_is_named_or_skipped(small_ph2, tmp_path, part, how):
  case = small_ph2 / 'PH2 Dataset images' / 'IMD001'
  victim = {'image': case / 'IMD001_Dermoscopic_Image' / 'IMD001.bmp',
            'mask': case / 'IMD001_lesion' / 'IMD001_lesion.bmp'}[part]
  damage(victim, how)
  build_fails('ph2', small_ph2, tmp_path / 'strict', rf'{victim.name}: not a readable image')
  builder, metadata = build_skipping('ph2', small_ph2, tmp_path / 'skipping')
  assert builder.info.splits.total_num_examples == 14 and 'IMD001' not in image_ids(builder)
  assert metadata['skipped_count'] == 1 and metadata['skipped'][0].startswith(str(victim))


def sheet(rows) -> bytes:
  workbook = openpyxl.Workbook()
  for row in rows:
    workbook.active.append(row)
  buffer = io.BytesIO()
  workbook.save(buffer)
  return buffer.getvalue()


SHEET_FAULTS = {
    'not_a_workbook': (b'Image Name,Common Nevus\nIMD001,X\n',
                       r'not a readable \.xlsx workbook \(BadZipFile'),
    'empty': (b'', r'not a readable \.xlsx workbook'),
    'no_header': (sheet([['IMD001', None, 'X']]),
                  'no header row starting with "Image Name" in its first worksheet'),
    'missing_column': (sheet([['Image Name', 'Histological Diagnosis', 'Common Nevus',
                               'Atypical Nevus'], ['IMD001', None, 'X', None]]),
                       r"header row lacks column\(s\) \['Melanoma'\]"),
}


@pytest.mark.parametrize('fault', sorted(SHEET_FAULTS))
def test_a_wrong_ph2_sheet_is_refused_even_when_skipping(small_ph2, tmp_path, fault):
  data, message = SHEET_FAULTS[fault]
  (small_ph2 / 'PH2_dataset.xlsx').write_bytes(data)
  for skip_corrupt in (False, True):
    build_fails('ph2', small_ph2, tmp_path / str(skip_corrupt),
                rf'PH2_dataset\.xlsx: {message}', skip_corrupt=skip_corrupt)


def mark_sheet(manual_dir, case, marks):
  """Sets the Common Nevus, Atypical Nevus and Melanoma cells of `case`'s row (appending
  a row when the sheet has none)."""
  path = manual_dir / 'PH2_dataset.xlsx'
  workbook = openpyxl.load_workbook(path)
  rows = list(workbook.active.iter_rows())
  row = next((row for row in rows if row[0].value == case), None)
  if row is None:
    workbook.active.append([case, None, *marks])
  else:
    for cell, mark in zip(row[2:5], marks):
      cell.value = mark
  workbook.save(path)


def test_a_ph2_case_with_two_diagnoses_is_named_or_skipped(small_ph2, tmp_path):
  mark_sheet(small_ph2, 'IMD002', ['X', None, 'X'])
  build_fails('ph2', small_ph2, tmp_path / 'strict', r'row \d+: case IMD002 has 2 of the columns '
              'Common Nevus, Atypical Nevus, Melanoma marked X; expected exactly one')
  builder, metadata = build_skipping('ph2', small_ph2, tmp_path / 'skipping')
  assert builder.info.splits.total_num_examples == 14 and 'IMD002' not in image_ids(builder)
  assert metadata['skipped_count'] == 1


def test_a_bad_sheet_row_for_a_case_without_a_folder_is_no_fault(small_ph2, tmp_path):
  # The real sheet lists all 200 cases; only the folders present need a diagnosis.
  mark_sheet(small_ph2, 'IMD199', [None, None, None])
  builder = builders.prepare('ph2', data_dir=str(tmp_path / 'out'), manual_dir=str(small_ph2))
  assert builder.info.splits.total_num_examples == 15


# ISIC9.

@pytest.fixture
def small_isic(tmp_path):
  """90 images: 8 Train and 2 Test per class, 32x32 JPEGs."""
  return synthetic.write_isic9(tmp_path / 'ISIC9', train_per_class=8, test_per_class=2,
                               image_size=(32, 32))


def test_a_stray_file_or_a_damaged_isic_jpeg_is_named_or_skipped(small_isic, tmp_path):
  melanoma = small_isic / synthetic.ISIC9_ROOT / 'Train' / 'melanoma'
  stray = melanoma / 'notes.txt'
  stray.write_text('to check')
  build_fails('isic9', small_isic, tmp_path / 'a', r'notes\.txt: not a \.jpg file; expected '
              'only JPEG images', config='all9')
  victim = sorted(melanoma.glob('*.jpg'))[0]
  damage(victim, 'truncated')
  builder, metadata = build_skipping('isic9', small_isic, tmp_path / 'b', config='all9')
  assert builder.info.splits.total_num_examples == 89
  assert metadata['skipped_count'] == 2
  assert [Path(line.split(':')[0]).name for line in metadata['skipped']] == [
      victim.name, 'notes.txt']


# The launchers' config field, from the command line.

# A config-file flag as launch/train.py defines it, under a name of this test's own.
CONFIG = config_flags.DEFINE_config_file('damaged_data_config', None, 'A run config.',
                                         lock_config=True)
CONFIG_FILE = REPO / 'launch' / 'configs' / 'deepconvnet_ham10000.py'


@pytest.fixture
def parsed_flags(monkeypatch):
  """Parses a command line (config_flags reads its overrides from sys.argv)."""
  def parse(argv):  # once per test: config_flags defines a flag per override it meets
    monkeypatch.setattr(sys, 'argv', argv)
    flags.FLAGS(argv)
  yield parse
  flags.FLAGS.unparse_flags()


def test_the_skip_corrupt_field_reaches_the_builder_through_the_run_spec(tmp_path,
                                                                          parsed_flags):
  manual = synthetic.write_ham10000(tmp_path / 'HAM10000', lesions_per_class={
      name: 5 for name in synthetic.HAM10000_CLASSES}, image_size=(40, 30), max_views=1)
  damage(first_image(manual), 'empty')
  # lesion protocol: train, validation and test partition the images
  parsed_flags(['train.py', f'--damaged_data_config={CONFIG_FILE}',
                '--damaged_data_config.image_size=16', '--damaged_data_config.skip_corrupt=True'])
  spec = RunSpec.from_config(CONFIG.value)
  assert spec.skip_corrupt is True
  with pytest.raises(DatasetFileError, match='not a readable image'):
    experiment_data.prepare(spec.replace(skip_corrupt=False), data_dir=str(tmp_path / 'a'),
                            manual_dir=str(manual))
  data = experiment_data.prepare(spec, data_dir=str(tmp_path / 'b'), manual_dir=str(manual))
  assert len(data.train) + len(data.validation) + len(data.test) == 34
