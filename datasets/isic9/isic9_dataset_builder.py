"""The 9-class ISIC skin-cancer set of paper 2 (EfficientSkinCaSV2B3), as published on Kaggle.

Layout: `Skin cancer ISIC The International Skin Imaging Collaboration/{Train,Test}/<class>/
ISIC_*.jpg`, with nine class folders (names contain spaces). The download holds copies:
byte-identical files, some filed under two diagnoses, some in both Train/ and Test/, and
renamed ones (`ISIC_xxxxxxx(1).jpg`). The builder reads it as it is:

- Copies (equal decoded pixels) collapse into one example that keeps every source path
  (`source_paths`).
- Duplicate groups (copies and near-duplicates, skinjax.data.duplicates) are split units:
  no group has images in two splits.
- A group filed under two diagnoses is left out, and listed (paths, diagnoses) in the
  dataset metadata (`conflicts`, `conflict_count`); the build log gives the count.
- The split is stratified by diagnosis and deterministic, 80/10/10 of the groups, computed
  once over all nine classes so that every scenario (config) draws its test images from
  the same test split.

Configs (paper 2's four scenarios):
- `all9`: the nine diagnoses.
- `benign_malignant`: malignant = basal cell carcinoma, melanoma, squamous cell carcinoma;
  benign = the other six (actinic keratosis, a precancerous lesion, counts as benign, as
  paper 2's six-benign scenario lists it).
- `benign6`: the six benign diagnoses only.
- `malignant3`: the three malignant diagnoses only.
Each has a `<name>_paper` twin for reproducing paper 2 only: every file is an example
under its folder's diagnosis and the split is by file (pooled, 80/10/10 per diagnosis), as
paper 2's random split was. It leaks: copies of one image sit in two splits, and under two
diagnoses.
"""

import os
import re

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

import numpy as np

from skinjax.data import builders, duplicates, image_files, image_hash, splits
from skinjax.data.layout import LayoutImage, pixels_or_none

ROOT = 'Skin cancer ISIC The International Skin Imaging Collaboration'
SOURCE_SPLITS = ('Train', 'Test')
DIAGNOSES = ('actinic keratosis', 'basal cell carcinoma', 'dermatofibroma', 'melanoma', 'nevus',
             'pigmented benign keratosis', 'seborrheic keratosis', 'squamous cell carcinoma',
             'vascular lesion')
MALIGNANT = ('basal cell carcinoma', 'melanoma', 'squamous cell carcinoma')
BENIGN = tuple(d for d in DIAGNOSES if d not in MALIGNANT)
IMAGE_SUFFIXES = ('.jpg', '.jpeg')
SPLIT_FRACTIONS = {'train': 0.8, 'validation': 0.1, 'test': 0.1}
SPLIT_SEED = 0
# Kaggle's renamed copies, ISIC_0025509(1).jpg: the image id is the name without "(1)".
RENAMED_COPY = re.compile(r'\(\d+\)$')


class Isic9Config(tfds.core.BuilderConfig):
  """A scenario: which diagnoses it keeps, the label each one gets, and the protocol."""

  def __init__(self, *, class_names, label_of, protocol='grouped', **kwargs):
    super().__init__(**kwargs)
    self.class_names = tuple(class_names)
    self.label_of = dict(label_of)  # diagnosis -> class name, for kept diagnoses only
    self.protocol = protocol  # 'grouped' (copies collapsed and grouped) or 'paper'


def _identity(names):
  return {name: name for name in names}


SCENARIOS = (
    ('all9', 'Nine diagnoses.', DIAGNOSES, _identity(DIAGNOSES)),
    ('benign_malignant', 'Benign (6) vs malignant (3).', ('benign', 'malignant'),
     {d: 'malignant' if d in MALIGNANT else 'benign' for d in DIAGNOSES}),
    ('benign6', 'The six benign diagnoses.', BENIGN, _identity(BENIGN)),
    ('malignant3', 'The three malignant diagnoses.', MALIGNANT, _identity(MALIGNANT)),
)
PAPER_NOTE = (' Paper 2\'s protocol, for reproduction only: every file is an example under '
              'its folder\'s diagnosis and the split is by file. It LEAKS: copies of one '
              'image sit in two splits and under two diagnoses.')


def layout_images(manual_dir, damaged=image_files.refuse) -> list[LayoutImage]:
  """Every image file of the Kaggle layout, Train/ then Test/, class by class, by name.

  A class folder that is not one of the nine raises DatasetFileError; a file that is not a
  .jpg goes to `damaged` (raises by default) and is left out.
  """
  root = epath.Path(manual_dir) / ROOT
  if not root.is_dir():
    raise image_files.DatasetFileError(
        f'{root}: not found; expected the Kaggle folder "{ROOT}" with Train/ and Test/ '
        'in the manual directory')
  images = []
  for source in SOURCE_SPLITS:
    folder = root / source
    if not folder.is_dir():
      raise image_files.DatasetFileError(f'{folder}: not found; expected {ROOT}/{source}/')
    for class_dir in sorted(folder.iterdir()):
      if class_dir.name.startswith('.'):
        continue
      if not class_dir.is_dir() or class_dir.name not in DIAGNOSES:
        raise image_files.DatasetFileError(
            f'{class_dir}: unknown class folder; expected only these nine: '
            f'{", ".join(DIAGNOSES)}')
      for path in sorted(class_dir.iterdir()):
        if path.name.startswith('.'):
          continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
          damaged(image_files.DatasetFileError(
              f'{path}: not a .jpg file; expected only JPEG images in the class folders'))
          continue
        images.append(LayoutImage(
            key=f'{source}/{class_dir.name}/{path.name}',
            image_id=RENAMED_COPY.sub('', path.name.rsplit('.', 1)[0]),
            label=class_dir.name, source_split=source,
            read=lambda path=path: (image_files.read_bytes(path), os.fspath(path))))
  if not images:
    raise image_files.DatasetFileError(f'{root}: no images under Train/ or Test/')
  return images


class Builder(builders.SkipsDamagedFiles, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for paper 2's 9-class ISIC set."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Initial release: stratified 80/10/10 splits over all nine.',
      '2.0.0': 'Builds the Kaggle layout as published. Copies (equal pixels) are one example '
               'with every source path (`source_paths`); groups of copies and '
               'near-duplicates never span two splits; groups filed under two diagnoses '
               'are left out and listed in the metadata (`conflicts`). New `*_paper` '
               'configs keep paper 2\'s leaking split by file. Features: `source_split` '
               'gives way to `source_paths` and `group`.',
  }
  BUILDER_CONFIGS = [
      Isic9Config(name=name, description=description, class_names=names, label_of=label_of)
      for name, description, names, label_of in SCENARIOS] + [
      Isic9Config(name=f'{name}_paper', description=description + PAPER_NOTE,
                  class_names=names, label_of=label_of, protocol='paper')
      for name, description, names, label_of in SCENARIOS]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download "Skin Cancer ISIC" (9 classes) from Kaggle
  (https://www.kaggle.com/datasets/nodoubttome/skin-cancer9-classesisic), unzip it and
  place in the manual directory:
    {ROOT}/Train/<class>/ISIC_*.jpg
    {ROOT}/Test/<class>/ISIC_*.jpg
  with the nine class folders {', '.join(DIAGNOSES)}.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(names=self.builder_config.class_names),
            'diagnosis': tfds.features.ClassLabel(names=DIAGNOSES),
            'image_id': tfds.features.Text(),
            'source_paths': tfds.features.Sequence(tfds.features.Text(), doc=(
                'Every file of this image under the Kaggle folder, e.g. '
                '"Train/nevus/ISIC_0000477.jpg"; more than one for copies.')),
            'group': tfds.features.Text(doc=(
                'The duplicate group (its first source path): examples of one group '
                'share a split.')),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://www.kaggle.com/datasets/nodoubttome/skin-cancer9-classesisic',
        # Filled by the build: what skip_corrupt left out (skinjax.data.builders) and the
        # conflicting groups left out.
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    images = layout_images(dl_manager.manual_dir, self.damaged)
    found = image_hash.fingerprints(images, lambda image: pixels_or_none(image, self.damaged))
    images = [images[k] for k in found.kept]
    if not images:
      raise image_files.DatasetFileError(
          f'{epath.Path(dl_manager.manual_dir) / ROOT}: no readable image left')
    if self.builder_config.protocol == 'paper':
      examples = [([k], images[k].key) for k in range(len(images))]
      assignment = splits.stratified_split([image.label for image in images],
                                           SPLIT_FRACTIONS, seed=SPLIT_SEED)
      conflicts = []
    else:
      examples, assignment, conflicts = self._grouped(images, found)
    self._conflicts = conflicts
    label_of = self.builder_config.label_of
    kept = {name: [examples[i] for i in indices if images[examples[i][0][0]].label in label_of]
            for name, indices in assignment.items()}
    for name in [name for name, split in kept.items() if not split]:
      # Only small samples get here (36 images: 3 test images cannot cover 9 classes).
      logging.warning('isic9/%s: no %s images of %s among the %d images; the split is left '
                      'out', self.builder_config.name, name, ', '.join(label_of), len(images))
      del kept[name]
    return {name: self._generate_examples([([images[k] for k in copies], group)
                                           for copies, group in split])
            for name, split in kept.items()}

  def _grouped(self, images, found):
    """(examples: (image positions, group key), one per set of copies; the split
    assignment of the examples; the conflicting groups left out, as metadata rows)."""
    pairs = duplicates.find_pairs(found)
    exact = pairs.select(pairs.exact)
    copies = duplicates.components(len(images), exact.left, exact.right)
    groups = duplicates.components(len(images), pairs.left, pairs.right)
    conflicts, left_out = [], set()
    for group in np.unique(groups):
      members = np.flatnonzero(groups == group)
      diagnoses = sorted({images[k].label for k in members})
      if len(diagnoses) > 1:
        left_out.add(group)
        conflicts.append({'paths': [images[k].key for k in members], 'diagnoses': diagnoses})
    # Ids are the first image of a set (in listing order); a renamed copy, "(1)", is
    # listed after the file it copies.
    examples = [(sorted(np.flatnonzero(copies == c).tolist(),
                        key=lambda k: ('(' in images[k].key, k)),
                 images[groups[c]].key)
                for c in np.unique(copies) if groups[c] not in left_out]
    assignment = splits.stratified_split(
        [images[positions[0]].label for positions, _ in examples], SPLIT_FRACTIONS,
        seed=SPLIT_SEED, groups=[group for _, group in examples])
    return examples, assignment, conflicts

  def _download_and_prepare(self, dl_manager, download_config):
    self._conflicts = []
    super()._download_and_prepare(dl_manager, download_config)
    self.info.metadata.update(conflict_count=len(self._conflicts), conflicts=self._conflicts)
    if self._conflicts:
      logging.warning('%s: left out %d group(s) of copies filed under two diagnoses '
                      '(listed in metadata.json, "conflicts")', self.info.full_name,
                      len(self._conflicts))

  def _generate_examples(self, examples):
    label_of = self.builder_config.label_of

    def example(item):
      copies, group = item
      first = copies[0]
      data, name = first.read()
      stored, _ = image_files.as_rgb_jpeg(data, name)
      return first.key, {
          'image': stored,
          'label': label_of[first.label],
          'diagnosis': first.label,
          'image_id': first.image_id,
          'source_paths': [image.key for image in copies],
          'group': group,
      }

    # Threads decode, check and encode several files at once.
    yield from self.examples_without_damaged(example, examples)
