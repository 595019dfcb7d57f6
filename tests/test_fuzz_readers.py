"""Fuzzing the dataset readers: whatever the bytes, an image, mask, metadata CSV or PH2 sheet
reader returns what it promises or raises DatasetFileError, never anything else."""

import csv
import functools
import importlib.util
import io
import os

from etils import epath
from hypothesis import HealthCheck, given, settings, strategies as st
import numpy as np
import openpyxl
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from skinjax.data import builders
from skinjax.data.image_files import DatasetFileError, read_mask, read_rgb, refuse

# PIL warns (corrupt EXIF, truncated TIFF tags) on the way to its errors; expected here.
pytestmark = pytest.mark.filterwarnings('ignore::UserWarning:PIL')
# No example database: runs leave nothing in the repository and do not depend on past runs.
FUZZ = settings(max_examples=200, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _encoded(mode, size, fmt, **kwargs):
  rng = np.random.default_rng(0)
  image = Image.fromarray(rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8))
  image = image.convert(mode) if mode != 'I;16' else Image.fromarray(
      rng.integers(0, 65536, size[::-1], dtype=np.uint16))
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


# Small valid files in the formats and modes the layouts and users bring; mutations of
# these reach deeper into the decoders than random bytes do.
SEEDS = [
    _encoded('RGB', (12, 9), 'JPEG'), _encoded('L', (12, 9), 'JPEG'),
    _encoded('CMYK', (12, 9), 'JPEG'), _encoded('RGB', (12, 9), 'PNG'),
    _encoded('RGBA', (12, 9), 'PNG'), _encoded('P', (12, 9), 'PNG'),
    _encoded('1', (12, 9), 'PNG'), _encoded('I;16', (12, 9), 'PNG'),
    _encoded('RGB', (12, 9), 'BMP'), _encoded('1', (12, 9), 'BMP'),
    _encoded('I;16', (12, 9), 'TIFF'), _encoded('RGB', (12, 9), 'GIF'),
]


@st.composite
def damaged_images(draw):
  """A seed file truncated, with bytes overwritten, or with bytes inserted."""
  data = bytearray(draw(st.sampled_from(SEEDS)))
  for _ in range(draw(st.integers(1, 3))):
    kind = draw(st.sampled_from(['truncate', 'overwrite', 'insert']))
    position = draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == 'truncate':
      del data[position:]
    elif kind == 'overwrite':
      chunk = draw(st.binary(min_size=1, max_size=8))
      data[position:position + len(chunk)] = chunk
    else:
      data[position:position] = draw(st.binary(min_size=1, max_size=8))
  return bytes(data)


any_image_bytes = st.one_of(st.binary(max_size=300), damaged_images(), st.sampled_from(SEEDS))


@FUZZ
@given(data=any_image_bytes)
def test_read_rgb_returns_rgb_uint8_or_raises_dataset_file_error(data):
  try:
    image = read_rgb(data, 'fuzz.jpg')
  except DatasetFileError as error:
    assert str(error).startswith('fuzz.jpg: ')
    return
  assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@FUZZ
@given(data=any_image_bytes)
def test_read_rgb_with_a_size_cap_stays_under_it(data):
  try:
    image = read_rgb(data, 'fuzz.png', max_side=4)
  except DatasetFileError:
    return
  assert max(image.shape[:2]) <= 4 and image.shape[2] == 3


@FUZZ
@given(data=any_image_bytes, rescale=st.booleans())
def test_read_mask_returns_binary_masks_or_raises_dataset_file_error(data, rescale):
  try:
    mask = read_mask(data, 'fuzz_lesion.bmp', size=(12, 9), rescale=rescale)
  except DatasetFileError as error:
    assert str(error).startswith('fuzz_lesion.bmp: ')
    return
  assert mask.shape == (9, 12, 1) and mask.dtype == np.uint8
  assert set(np.unique(mask)) <= {0, 1}


@functools.cache
def _dataset_module(name):
  # A private copy of the builder's module, loaded without TFDS registration: importing
  # it under its own name here would leave an unregistered `ham10000...` module in
  # sys.modules, and the builders' own tests would then miss it in tfds.list_builders().
  path = os.path.join(builders.datasets_dir(), name, f'{name}_dataset_builder.py')
  spec = importlib.util.spec_from_file_location(f'_fuzzed_{name}_dataset_builder', path)
  module = importlib.util.module_from_spec(spec)
  with tfds.core.registered.skip_registration():
    spec.loader.exec_module(module)
  return module


HAM = _dataset_module('ham10000')
PH2 = _dataset_module('ph2')

# Fields mixing valid values with the ways a hand-edited CSV goes wrong.
field = st.one_of(st.sampled_from(HAM.CLASS_NAMES + ('', 'NV', 'melanoma', '45', '-1', 'nan',
                                                     'ISIC_0000001', '1e400')),
                  st.text(max_size=6))


@st.composite
def metadata_csvs(draw):
  header = draw(st.one_of(st.just(list(HAM.COLUMNS)), st.permutations(HAM.COLUMNS),
                          st.lists(st.sampled_from(HAM.COLUMNS + ('extra',)), max_size=9)))
  rows = draw(st.lists(st.lists(field, min_size=max(len(header) - 1, 0), max_size=len(header) + 1),
                       max_size=6))
  buffer = io.StringIO()
  csv.writer(buffer).writerows([header] + rows)
  return buffer.getvalue().encode()


def _write(tmp_path_factory, name, data):
  folder = tmp_path_factory.mktemp('fuzz')
  (folder / name).write_bytes(data)
  return epath.Path(folder)


@FUZZ
@given(data=st.one_of(metadata_csvs(), st.binary(max_size=200),
                      st.text(max_size=200).map(str.encode)), skip=st.booleans())
def test_metadata_reader_returns_checked_rows_or_raises_dataset_file_error(
    tmp_path_factory, data, skip):
  manual_dir = _write(tmp_path_factory, HAM.METADATA, data)
  skipped = []
  try:
    rows = HAM.read_metadata(manual_dir, skipped.append if skip else refuse)
  except DatasetFileError as error:
    assert HAM.METADATA in str(error)
    return
  assert all(isinstance(error, DatasetFileError) for error in skipped)
  for row in rows:  # what the builder relies on
    assert row['dx'] in HAM.CLASS_NAMES and row['image_id']
    assert row['age'].strip() == '' or 0 <= float(row['age']) <= HAM.MAX_AGE
  assert len({row['image_id'] for row in rows}) == len(rows)


cell = st.one_of(st.none(), st.sampled_from(['X', 'x', ' X ', '', 'Image Name', 'IMD002',
                                             'Melanoma', 'Common Nevus', 'Atypical Nevus']),
                 st.integers(-5, 5), st.text(max_size=5))


@st.composite
def ph2_sheets(draw):
  workbook = openpyxl.Workbook()
  sheet = workbook.active
  if draw(st.booleans()):
    sheet.append(['Image Name', 'Histological Diagnosis'] + list(PH2.SHEET_COLUMNS))
  for row in draw(st.lists(st.lists(cell, max_size=6), max_size=5)):
    # openpyxl refuses control characters in cells; a real sheet cannot hold them either.
    sheet.append([c if not isinstance(c, str) else ''.join(ch for ch in c if ch.isprintable())
                  for c in row])
  buffer = io.BytesIO()
  workbook.save(buffer)
  data = buffer.getvalue()
  if draw(st.booleans()):  # or a damaged copy of it
    position = draw(st.integers(0, 2**16)) % len(data)  # saved sizes vary (timestamps)
    data = data[:position] + draw(st.binary(max_size=4)) + data[position + 4:]
  return data


@settings(FUZZ, max_examples=40)
@given(data=st.one_of(ph2_sheets(), st.binary(max_size=200)))
def test_ph2_sheet_reader_returns_diagnoses_or_raises_dataset_file_error(tmp_path_factory, data):
  manual_dir = _write(tmp_path_factory, PH2.SHEET, data)
  try:
    diagnoses = PH2.read_diagnoses(manual_dir)
  except DatasetFileError as error:
    assert PH2.SHEET in str(error)
    return
  for case, diagnosis in diagnoses.items():
    assert isinstance(diagnosis, DatasetFileError) or diagnosis['label'] in PH2.CLASS_NAMES


def test_the_fuzzed_seeds_are_all_readable():
  """The mutations start from files the readers accept (else the fuzzing proves little)."""
  for data in SEEDS:
    assert read_rgb(data).shape == (9, 12, 3)

