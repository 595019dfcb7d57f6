"""isic9 dataset: the stock TFDS builder test on a generated fake layout."""

import tempfile

import tensorflow_datasets as tfds

from skinjax.data import synthetic
from . import isic9_dataset_builder

# 8 Train and 2 Test images per class, pooled: 8/1/1 of each class per split.
FAKE = tempfile.mkdtemp(prefix='isic9_fake_')
synthetic.write_isic9(FAKE, train_per_class=8, test_per_class=2, image_size=(32, 32), seed=5)


class Isic9AllTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = isic9_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['all9', 'benign_malignant']
  EXAMPLE_DIR = FAKE
  SPLITS = {'train': 72, 'validation': 9, 'test': 9}
  SKIP_CHECKSUMS = True


class Isic9Benign6Test(Isic9AllTest):
  BUILDER_CONFIG_NAMES_TO_TEST = ['benign6']
  SPLITS = {'train': 48, 'validation': 6, 'test': 6}


class Isic9Malignant3Test(Isic9AllTest):
  BUILDER_CONFIG_NAMES_TO_TEST = ['malignant3']
  SPLITS = {'train': 24, 'validation': 3, 'test': 3}


if __name__ == '__main__':
  tfds.testing.test_main()
