"""HAM10000 (Tschandl et al., Sci. Data 2018): 10,015 dermoscopy images of 7 diagnoses.

Reads the public download as published: `HAM10000_metadata.csv`, the images in
`HAM10000_images_part_1/` and `HAM10000_images_part_2/` (or the original zip files of those
names), and, for the `with_masks` config, the lesion masks of Tschandl et al. 2020 in
`HAM10000_segmentations_lesion_tschandl/` (or its zip).

Splits are grouped by `lesion_id` (all images of a lesion share a split: 2,545 images show
a lesion another image already shows) and by duplicate group (copies and near-duplicates
of one image, skinjax.data.duplicates, share a split even when filed under two lesions),
and stratified by diagnosis: 70/10/20 of the groups of each class, deterministic.
"""

import csv
import io
import math
import os
import zipfile

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from skinjax.data import builders, duplicates, image_files, image_hash, splits
from skinjax.data.layout import LayoutImage, pixels_or_none

CLASS_NAMES = ('akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc')
METADATA = 'HAM10000_metadata.csv'
IMAGE_PARTS = ('HAM10000_images_part_1', 'HAM10000_images_part_2')
MASKS = 'HAM10000_segmentations_lesion_tschandl'
COLUMNS = ('lesion_id', 'image_id', 'dx', 'dx_type', 'age', 'sex', 'localization')
SPLIT_FRACTIONS = {'train': 0.7, 'validation': 0.1, 'test': 0.2}
SPLIT_SEED = 0
MAX_AGE = 150


class FileIndex:
  """Finds files by name in a folder or, failing that, in a zip file of the same name."""

  def __init__(self, manual_dir: epath.Path, folder: str, suffix: str):
    self.sources = []
    self._members: dict[str, tuple[object, str]] = {}
    self._zips = {}
    directory = manual_dir / folder
    archive = manual_dir / f'{folder}.zip'
    if directory.is_dir():
      self.sources.append(f'{folder}/')
      for path in directory.iterdir():
        if path.name.endswith(suffix):
          self._members[path.name[:-len(suffix)]] = (path, None)
    elif archive.exists():
      self.sources.append(f'{folder}.zip')
      # Members are read on demand: the original zips hold gigabytes.
      try:
        self._zips[archive] = zipfile.ZipFile(archive.open('rb'))
      except Exception as error:  # zipfile raises several types for damaged archives.
        raise image_files.DatasetFileError(
            f'{archive}: not a readable zip file ({type(error).__name__}: {error}); expected '
            f'the HAM10000 download\'s {folder}.zip') from None
      for member in self._zips[archive].namelist():
        name = member.rsplit('/', 1)[-1]
        if name.endswith(suffix):
          self._members[name[:-len(suffix)]] = (archive, member)

  def __contains__(self, key):
    return key in self._members

  def name_of(self, key) -> str:
    """The file of `key` under the manual directory: `folder/name` or `archive.zip!member`."""
    source, member = self._members[key]
    return f'{source.name}!{member}' if member is not None else f'{source.parent.name}/{source.name}'

  def read(self, key) -> tuple[bytes, str]:
    """(bytes, a name for error messages) of the file for `key`."""
    source, member = self._members[key]
    if member is None:
      return image_files.read_bytes(source), os.fspath(source)
    name = f'{source}!{member}'
    try:
      return self._zips[source].read(member), name
    except Exception as error:  # a bad CRC, a truncated archive, an unknown compression
      raise image_files.DatasetFileError(
          f'{name}: cannot be read from the zip ({type(error).__name__}: {error})') from None


def read_metadata(manual_dir: epath.Path, damaged=image_files.refuse) -> list[dict]:
  """The rows of HAM10000_metadata.csv that pass the checks: all fields present, a known
  diagnosis, an image id not seen before, an age that is empty or a number of years.

  A failing row goes to `damaged` (which raises by default; a build under skip_corrupt
  records it and the row is left out). A file that is not such a CSV always raises
  DatasetFileError.
  """
  path = manual_dir / METADATA
  if not path.exists():
    raise image_files.DatasetFileError(
        f'{path}: not found; expected the HAM10000 metadata CSV ({",".join(COLUMNS)}) in '
        f'the manual directory {manual_dir}')
  try:
    # utf-8-sig: a spreadsheet that saved the CSV may have put a byte-order mark first.
    text = image_files.read_bytes(path).decode('utf-8-sig')
  except UnicodeDecodeError as error:
    raise image_files.DatasetFileError(
        f'{path}: not UTF-8 text ({error}); expected the HAM10000 metadata CSV') from None
  reader = csv.DictReader(io.StringIO(text))
  rows, first_line = [], {}
  try:
    header = reader.fieldnames or []
    missing = [column for column in COLUMNS if column not in header]
    if missing:
      raise image_files.DatasetFileError(
          f'{path}: missing column(s) {missing}; expected the header {",".join(COLUMNS)}')
    for row in reader:
      problem = _row_problem(row, len(header), first_line)
      if problem:
        damaged(image_files.DatasetFileError(f'{path}, line {reader.line_num}: {problem}'))
        continue
      first_line[row['image_id']] = reader.line_num
      rows.append(row)
  except csv.Error as error:
    raise image_files.DatasetFileError(
        f'{path}, line {reader.line_num}: not valid CSV ({error})') from None
  return rows


def _row_problem(row: dict, num_columns: int, first_line: dict) -> str | None:
  """What is wrong with one metadata row, or None."""
  # csv.DictReader fills a short row with None and puts a long row's extra fields under None.
  if None in row or any(value is None for value in row.values()):
    found = sum(value is not None for key, value in row.items() if key is not None)
    return (f'has {found + len(row.get(None) or ())} fields, expected {num_columns} as in '
            'the header')
  image_id, dx, age = row['image_id'], row['dx'], row['age'].strip()
  if not image_id:
    return 'no image_id'
  if dx not in CLASS_NAMES:
    return f'unknown diagnosis {dx!r} for {image_id}; expected one of {", ".join(CLASS_NAMES)}'
  if image_id in first_line:
    return f'image {image_id} listed again (first on line {first_line[image_id]})'
  try:
    years = float(age) if age else 0.0
  except ValueError:
    years = math.nan
  if not 0 <= years <= MAX_AGE:
    return f'age {age!r} for {image_id}; expected empty or a number of years, 0 to {MAX_AGE}'
  return None


def image_indexes(manual_dir: epath.Path) -> list[FileIndex]:
  """The indexes of the two image parts (folders or zips); DatasetFileError if neither is
  there."""
  images = [FileIndex(manual_dir, part, '.jpg') for part in IMAGE_PARTS]
  if not any(index.sources for index in images):
    raise image_files.DatasetFileError(
        f'{manual_dir}: none of {IMAGE_PARTS[0]}/, {IMAGE_PARTS[1]}/ or their .zip files '
        'found; expected the HAM10000 image folders in the manual directory')
  return images


def layout_image(row: dict, images: list[FileIndex]) -> LayoutImage:
  """The image of metadata row `row` (whose file the indexes hold)."""
  image_id = row['image_id']
  index = next(index for index in images if image_id in index)
  return LayoutImage(key=index.name_of(image_id), image_id=image_id, label=row['dx'],
                     group=row['lesion_id'], read=lambda: index.read(image_id))


def layout_images(manual_dir, damaged=image_files.refuse) -> list[LayoutImage]:
  """The images the metadata lists, in its order; a bad row or a listed file that is
  absent goes to `damaged` (raises by default) and is left out."""
  manual_dir = epath.Path(manual_dir)
  rows = read_metadata(manual_dir, damaged)
  images = image_indexes(manual_dir)
  listed = []
  for row in rows:
    if any(row['image_id'] in index for index in images):
      listed.append(layout_image(row, images))
    else:
      damaged(_absent(row, images, manual_dir))
  return listed


def _absent(row: dict, images: list[FileIndex], manual_dir) -> image_files.DatasetFileError:
  found = ', '.join(source for index in images for source in index.sources)
  return image_files.DatasetFileError(
      f'{manual_dir / METADATA}: lists image {row["image_id"]}, but no {row["image_id"]}.jpg '
      f'is in {found}')


class Builder(builders.SkipsDamagedFiles, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for HAM10000."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release: lesion-grouped stratified 70/10/20 splits.',
      '2.0.0': 'Splits also group copies and near-duplicates of one image filed under '
               'different lesions: no duplicate group spans two splits.',
  }
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='images', description='Images and metadata.'),
      tfds.core.BuilderConfig(
          name='with_masks',
          description=f'Images, metadata and binary lesion masks from {MASKS}/.'),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download HAM10000 from the Harvard Dataverse (doi:10.7910/DVN/DBW86T), accepting its
  licence (CC BY-NC 4.0), and place in the manual directory:
    {METADATA}
    {IMAGE_PARTS[0]}/ and {IMAGE_PARTS[1]}/ (or the zip files {IMAGE_PARTS[0]}.zip and
      {IMAGE_PARTS[1]}.zip as downloaded)
  For the `with_masks` config, also the lesion segmentations (Tschandl et al. 2020):
    {MASKS}/ISIC_xxxxxxx_segmentation.png (or {MASKS}.zip)
  """

  def _info(self) -> tfds.core.DatasetInfo:
    features = {
        'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
        'label': tfds.features.ClassLabel(names=CLASS_NAMES),
        'image_id': tfds.features.Text(),
        'lesion_id': tfds.features.Text(),
        'dx_type': tfds.features.Text(),
        'age': tfds.features.Scalar(np.float32, doc='Years; NaN where the CSV has none.'),
        'sex': tfds.features.Text(),
        'localization': tfds.features.Text(),
    }
    if self.builder_config.name == 'with_masks':
      features['mask'] = tfds.features.Image(
          shape=(None, None, 1), encoding_format='png',
          doc='Lesion mask in {0, 1}, at the size of the stored image.')
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        supervised_keys=('image', 'label'),
        homepage='https://doi.org/10.7910/DVN/DBW86T',
        # Filled by the build: what skip_corrupt left out (skinjax.data.builders).
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    rows = read_metadata(manual_dir, self.damaged)
    images = image_indexes(manual_dir)
    masks = None
    if self.builder_config.name == 'with_masks':
      masks = FileIndex(manual_dir, MASKS, '_segmentation.png')
      if not masks.sources:
        raise image_files.DatasetFileError(
            f'{manual_dir}: no {MASKS}/ or {MASKS}.zip; the with_masks config needs the '
            'HAM10000 lesion segmentations')
    rows = [row for row in rows if self._files_exist(row, images, masks, manual_dir)]
    found = image_hash.fingerprints([layout_image(row, images) for row in rows],
                                    lambda image: pixels_or_none(image, self.damaged))
    rows = [rows[k] for k in found.kept]
    if not rows:
      raise image_files.DatasetFileError(
          f'{manual_dir / METADATA}: no row left with its files; nothing to build')
    pairs = duplicates.find_pairs(found)
    assignment = splits.stratified_split(
        [row['dx'] for row in rows], SPLIT_FRACTIONS, seed=SPLIT_SEED,
        groups=splits.merge_groups([row['lesion_id'] for row in rows], pairs.left,
                                   pairs.right))
    return {name: self._generate_examples([rows[i] for i in indices], images, masks)
            for name, indices in assignment.items()}

  def _files_exist(self, row, images, masks, manual_dir) -> bool:
    """Whether the image (and mask) that `row` names are there; if not, `damaged` hears."""
    image_id = row['image_id']
    if not any(image_id in index for index in images):
      self.damaged(_absent(row, images, manual_dir))
      return False
    if masks is not None and image_id not in masks:
      self.damaged(image_files.DatasetFileError(
          f'{manual_dir / METADATA}: no mask {image_id}_segmentation.png in '
          f'{masks.sources[0]} for image {image_id}'))
      return False
    return True

  def _generate_examples(self, rows, images, masks):
    def example(row):
      image_id = row['image_id']
      index = next(index for index in images if image_id in index)
      data, name = index.read(image_id)
      stored, size = image_files.as_rgb_jpeg(data, name)
      features = {
          'image': stored,
          'label': row['dx'],
          'image_id': image_id,
          'lesion_id': row['lesion_id'],
          'dx_type': row['dx_type'],
          'age': float(row['age']) if row['age'].strip() else math.nan,
          'sex': row['sex'],
          'localization': row['localization'],
      }
      if masks is not None:
        mask_data, mask_name = masks.read(image_id)
        # Masks come at the original 600x450; a downscaled copy of the images is fine.
        mask = image_files.read_mask(mask_data, mask_name, size=size, rescale=True)
        features['mask'] = image_files.encode_png(mask)
      return image_id, features

    # Threads decode, check and encode several files at once.
    yield from self.examples_without_damaged(example, rows)
