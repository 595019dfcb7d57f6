"""The 9-class ISIC skin-cancer set of paper 2 (EfficientSkinCaSV2B3), as published on Kaggle.

Layout: `Skin cancer ISIC The International Skin Imaging Collaboration/{Train,Test}/<class>/
ISIC_*.jpg`, with nine class folders (names contain spaces). Paper 2 pools the images
and splits them 8/1/1 at random; here the split is stratified by diagnosis and
deterministic, computed once over all nine classes so that every scenario (config) draws
its test images from the same test split.

Configs (paper 2's four scenarios):
- `all9`: the nine diagnoses.
- `benign_malignant`: malignant = basal cell carcinoma, melanoma, squamous cell carcinoma;
  benign = the other six (actinic keratosis, a precancerous lesion, counts as benign, as
  paper 2's six-benign scenario lists it).
- `benign6`: the six benign diagnoses only.
- `malignant3`: the three malignant diagnoses only.
"""

import os

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

from skinjax.data import builders, image_files, splits

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


class Isic9Config(tfds.core.BuilderConfig):
  """A scenario: which diagnoses it keeps and the label each one gets."""

  def __init__(self, *, class_names, label_of, **kwargs):
    super().__init__(**kwargs)
    self.class_names = tuple(class_names)
    self.label_of = dict(label_of)  # diagnosis -> class name, for kept diagnoses only


def _identity(names):
  return {name: name for name in names}


class Builder(builders.SkipsDamagedFiles, tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for paper 2's 9-class ISIC set."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: stratified 80/10/10 splits over all nine.'}
  BUILDER_CONFIGS = [
      Isic9Config(name='all9', description='Nine diagnoses.', class_names=DIAGNOSES,
                  label_of=_identity(DIAGNOSES)),
      Isic9Config(name='benign_malignant', description='Benign (6) vs malignant (3).',
                  class_names=('benign', 'malignant'),
                  label_of={d: 'malignant' if d in MALIGNANT else 'benign' for d in DIAGNOSES}),
      Isic9Config(name='benign6', description='The six benign diagnoses.', class_names=BENIGN,
                  label_of=_identity(BENIGN)),
      Isic9Config(name='malignant3', description='The three malignant diagnoses.',
                  class_names=MALIGNANT, label_of=_identity(MALIGNANT)),
  ]
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
            'source_split': tfds.features.Text(doc='The Kaggle folder: Train or Test.'),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://www.kaggle.com/datasets/nodoubttome/skin-cancer9-classesisic',
        # Filled by the build: what skip_corrupt left out (skinjax.data.builders).
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    root = manual_dir / ROOT
    if not root.is_dir():
      raise image_files.DatasetFileError(
          f'{root}: not found; expected the Kaggle folder "{ROOT}" with Train/ and Test/ '
          'in the manual directory')
    records = []
    for source in SOURCE_SPLITS:
      folder = root / source
      if not folder.is_dir():
        raise image_files.DatasetFileError(f'{folder}: not found; expected {ROOT}/{source}/')
      seen = {}  # image id -> its file, over the class folders of this source
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
          image_id = path.name.rsplit('.', 1)[0]
          if path.suffix.lower() not in IMAGE_SUFFIXES:
            self.damaged(image_files.DatasetFileError(
                f'{path}: not a .jpg file; expected only JPEG images in the class folders'))
          elif image_id in seen:
            # Example keys are <source>/<image id>: a second file of that id would clash.
            self.damaged(image_files.DatasetFileError(
                f'{path}: a second file for image {image_id} (also {seen[image_id]})'))
          else:
            seen[image_id] = path
            records.append({'path': path, 'diagnosis': class_dir.name, 'source': source,
                            'image_id': image_id})
    if not records:
      raise image_files.DatasetFileError(f'{root}: no images under Train/ or Test/')
    assignment = splits.stratified_split([r['diagnosis'] for r in records], SPLIT_FRACTIONS,
                                         seed=SPLIT_SEED)
    label_of = self.builder_config.label_of
    kept = {name: [records[i] for i in indices if records[i]['diagnosis'] in label_of]
            for name, indices in assignment.items()}
    for name in [name for name, split in kept.items() if not split]:
      # Only small samples get here (36 images: 3 test images cannot cover 9 classes).
      logging.warning('isic9/%s: no %s images of %s among the %d images; the split is left '
                      'out', self.builder_config.name, name, ', '.join(label_of), len(records))
      del kept[name]
    return {name: self._generate_examples(split) for name, split in kept.items()}

  def _generate_examples(self, records):
    label_of = self.builder_config.label_of

    def example(record):
      path, image_id = record['path'], record['image_id']
      stored, _ = image_files.as_rgb_jpeg(image_files.read_bytes(path), os.fspath(path))
      return f'{record["source"]}/{image_id}', {
          'image': stored,
          'label': label_of[record['diagnosis']],
          'diagnosis': record['diagnosis'],
          'image_id': image_id,
          'source_split': record['source'],
      }

    # Threads decode, check and encode several files at once.
    yield from self.examples_without_damaged(example, records)
