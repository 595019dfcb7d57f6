"""ham10000 dataset: the stock TFDS builder test on a generated fake layout."""

import tempfile

import tensorflow_datasets as tfds

from skinjax.data import synthetic
from . import ham10000_dataset_builder

# 10 single-image lesions per class: 7/1/2 lesions of each class per split.
FAKE = tempfile.mkdtemp(prefix='ham10000_fake_')
synthetic.write_ham10000(FAKE, lesions_per_class={name: 10 for name in synthetic.HAM10000_CLASSES},
                         image_size=(40, 30), mask_scale=3, max_views=1, seed=3)


class Ham10000Test(tfds.testing.DatasetBuilderTestCase):
  """Both configs build from the fake layout (masks at 3x the image size, as in the
  shared copy) with the expected lesion-grouped splits."""

  DATASET_CLASS = ham10000_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['images', 'with_masks']
  EXAMPLE_DIR = FAKE
  SPLITS = {'train': 49, 'validation': 7, 'test': 14}
  SKIP_CHECKSUMS = True


if __name__ == '__main__':
  tfds.testing.test_main()
