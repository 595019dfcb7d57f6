"""PH2 (Mendonca et al., EMBC 2013): 200 dermoscopy images with lesion masks.

Reads the public layout as published: `PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/
IMDxxx.bmp` with its mask `IMDxxx_lesion/IMDxxx_lesion.bmp` (1-bit BMP, except IMD002's,
a 24-bit top-down BMP), and the clinical diagnosis from `PH2_dataset.xlsx`, where an `X`
under Common Nevus, Atypical Nevus or Melanoma marks it. The image folders are what exists
(the sheet lists all 200 cases); the sheet gives their labels.

Splits, stratified by diagnosis and deterministic: 80/20 train/test as in paper 1, with a
validation part of 10% of the whole carved from the train part (70/10/20). Copies and
near-duplicates of one image (skinjax.data.duplicates) share a split.
"""

import io
import os

from etils import epath
import openpyxl
import tensorflow_datasets as tfds

from skinjax.data import builders, duplicates, image_files, image_hash, splits
from skinjax.data.layout import LayoutImage, pixels_or_none

CLASS_NAMES = ('common_nevus', 'atypical_nevus', 'melanoma')
SHEET_COLUMNS = ('Common Nevus', 'Atypical Nevus', 'Melanoma')
IMAGES = 'PH2 Dataset images'
SHEET = 'PH2_dataset.xlsx'
SPLIT_FRACTIONS = {'train': 0.7, 'validation': 0.1, 'test': 0.2}
SPLIT_SEED = 0


def _cell(value) -> str:
  return ' '.join(str(value).split()) if value is not None else ''


def _sheet_rows(path: epath.Path) -> list[list[str]]:
  """The cells of the workbook's first worksheet, as text, row by row."""
  try:
    workbook = openpyxl.load_workbook(io.BytesIO(image_files.read_bytes(path)), read_only=True)
    # A read-only workbook parses the sheet while it is iterated: errors can come from here.
    return [[_cell(value) for value in row]
            for row in workbook.worksheets[0].iter_rows(values_only=True)]
  except image_files.DatasetFileError:
    raise
  except Exception as error:  # zipfile, XML and openpyxl errors for damaged workbooks
    raise image_files.DatasetFileError(
        f'{path}: not a readable .xlsx workbook ({type(error).__name__}: {error}); expected '
        'the PH2 diagnosis sheet') from None


def read_diagnoses(manual_dir: epath.Path) -> dict[str, dict | image_files.DatasetFileError]:
  """Case name -> {'label': class name, 'histology': text} from PH2_dataset.xlsx.

  A case whose row marks not exactly one diagnosis, or that is listed twice, maps to the
  DatasetFileError naming its row instead: the sheet lists all 200 cases, and only a case
  whose folder is there needs a diagnosis (the builder raises that error, or skips the
  case). A file that is not the PH2 sheet raises DatasetFileError.
  """
  path = manual_dir / SHEET
  if not path.exists():
    raise image_files.DatasetFileError(
        f'{path}: not found; expected the PH2 diagnosis sheet in the manual directory')
  rows = _sheet_rows(path)
  # Legend rows sit above the header; the header is the row that starts 'Image Name'.
  header_index = next((i for i, row in enumerate(rows) if row and row[0] == 'Image Name'), None)
  if header_index is None:
    raise image_files.DatasetFileError(
        f'{path}: no header row starting with "Image Name" in its first worksheet; '
        'expected the PH2 diagnosis sheet')
  header = rows[header_index]
  missing = [column for column in SHEET_COLUMNS if column not in header]
  if missing:
    raise image_files.DatasetFileError(f'{path}: header row lacks column(s) {missing}')
  columns = [header.index(column) for column in SHEET_COLUMNS]
  histology = header.index('Histological Diagnosis') if 'Histological Diagnosis' in header else None
  diagnoses, first_row = {}, {}
  for line, row in enumerate(rows[header_index + 1:], start=header_index + 2):
    if not row or not row[0]:
      continue
    marked = [name for name, column in zip(CLASS_NAMES, columns)
              if column < len(row) and row[column].upper() == 'X']
    if row[0] in first_row:
      diagnoses[row[0]] = image_files.DatasetFileError(
          f'{path}, row {line}: case {row[0]} listed again (first in row {first_row[row[0]]})')
    elif len(marked) != 1:
      diagnoses[row[0]] = image_files.DatasetFileError(
          f'{path}, row {line}: case {row[0]} has {len(marked)} of the columns '
          f'{", ".join(SHEET_COLUMNS)} marked X; expected exactly one')
    else:
      diagnoses[row[0]] = {'label': marked[0], 'histology': (
          row[histology] if histology is not None and histology < len(row) else '')}
    first_row.setdefault(row[0], line)
  return diagnoses


def layout_image(record: dict, manual_dir) -> LayoutImage:
  """The dermoscopic image of a case record (Builder._record)."""
  path = record['image']
  return LayoutImage(
      key=os.fspath(path.relative_to(epath.Path(manual_dir))), image_id=record['case'],
      label=record['label'], group=record['case'],
      read=lambda: (image_files.read_bytes(path), os.fspath(path)))


def case_records(manual_dir: epath.Path, damaged=image_files.refuse) -> list[dict]:
  """Files and diagnosis of every case folder, by name; a case missing a file or a
  diagnosis goes to `damaged` (raises by default) and is left out."""
  diagnoses = read_diagnoses(manual_dir)
  images = manual_dir / IMAGES
  if not images.is_dir():
    raise image_files.DatasetFileError(
        f'{images}: not found; expected the PH2 case folders (IMDxxx/) there')
  cases = sorted(path.name for path in images.iterdir() if path.is_dir())
  if not cases:
    raise image_files.DatasetFileError(f'{images}: holds no case folders')
  records = [record for record in (_case_record(images, case, diagnoses, manual_dir, damaged)
                                   for case in cases) if record is not None]
  if not records:
    raise image_files.DatasetFileError(f'{images}: no case left with its files and '
                                       'diagnosis; nothing to build')
  return records


def _case_record(images, case, diagnoses, manual_dir, damaged) -> dict | None:
  """The files and diagnosis of `case`, or None (and `damaged` hears) when one is missing."""
  image = images / case / f'{case}_Dermoscopic_Image' / f'{case}.bmp'
  mask = images / case / f'{case}_lesion' / f'{case}_lesion.bmp'
  diagnosis = diagnoses.get(case)
  if diagnosis is None:
    damaged(image_files.DatasetFileError(
        f'{images / case}: case folder has no row in {manual_dir / SHEET}'))
    return None
  if isinstance(diagnosis, image_files.DatasetFileError):
    damaged(diagnosis)
    return None
  for path in (image, mask):
    if not path.exists():
      damaged(image_files.DatasetFileError(
          f'{path}: not found; expected the PH2 layout {case}/{case}_Dermoscopic_Image/'
          f'{case}.bmp and {case}/{case}_lesion/{case}_lesion.bmp'))
      return None
  return {'case': case, 'image': image, 'mask': mask, **diagnosis}


def layout_images(manual_dir, damaged=image_files.refuse) -> list[LayoutImage]:
  """The dermoscopic image of every case that has its files and a diagnosis."""
  manual_dir = epath.Path(manual_dir)
  return [layout_image(record, manual_dir) for record in case_records(manual_dir, damaged)]


class Builder(builders.SkipsDamagedFiles, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for PH2."""

  # Copies now share a split, which changes nothing where no case copies another (the
  # real sample, and the 200 cases as far as is known): the version stays.
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: stratified 70/10/20 splits.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Request PH2 from https://www.fc.up.pt/addi/ph2%20database.html (free for research
  with citation), unpack it and place in the manual directory:
    {IMAGES}/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp
    {IMAGES}/IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp
    {SHEET}
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3), encoding_format='png'),
            'mask': tfds.features.Image(shape=(None, None, 1), encoding_format='png',
                                        doc='Lesion mask in {0, 1}, the size of the image.'),
            'label': tfds.features.ClassLabel(names=CLASS_NAMES),
            'image_id': tfds.features.Text(),
            'histological_diagnosis': tfds.features.Text(),
        }),
        supervised_keys=('image', 'mask'),
        homepage='https://www.fc.up.pt/addi/ph2%20database.html',
        # Filled by the build: what skip_corrupt left out (skinjax.data.builders).
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    records = case_records(manual_dir, self.damaged)
    found = image_hash.fingerprints([layout_image(record, manual_dir) for record in records],
                                    lambda image: pixels_or_none(image, self.damaged))
    records = [records[k] for k in found.kept]
    pairs = duplicates.find_pairs(found)
    assignment = splits.stratified_split(
        [r['label'] for r in records], SPLIT_FRACTIONS, seed=SPLIT_SEED,
        groups=splits.merge_groups([r['case'] for r in records], pairs.left, pairs.right))
    return {name: self._generate_examples([records[i] for i in indices])
            for name, indices in assignment.items()}

  def _generate_examples(self, records):
    def example(record):
      image_path, mask_path = record['image'], record['mask']
      image = image_files.read_rgb(image_path, os.fspath(image_path))
      height, width = image.shape[:2]
      mask = image_files.read_mask(mask_path, os.fspath(mask_path), size=(width, height))
      return record['case'], {
          'image': image_files.encode_png(image),
          'mask': image_files.encode_png(mask),
          'label': record['label'],
          'image_id': record['case'],
          'histological_diagnosis': record['histology'],
      }

    # Threads decode, check and encode several files at once.
    yield from self.examples_without_damaged(example, records)
