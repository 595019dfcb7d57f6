"""ph2 dataset: the stock TFDS builder test on a generated fake layout."""

import tempfile

import tensorflow_datasets as tfds

from skinjax.data import synthetic
from . import ph2_dataset_builder

# 10 cases per diagnosis: 7/1/2 of each per split.
FAKE = tempfile.mkdtemp(prefix='ph2_fake_')
synthetic.write_ph2(FAKE, cases_per_class={name: 10 for name in synthetic.PH2_CLASSES},
                    image_size=(64, 48), seed=4)


class Ph2Test(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = ph2_dataset_builder.Builder
  EXAMPLE_DIR = FAKE
  SPLITS = {'train': 21, 'validation': 3, 'test': 6}
  SKIP_CHECKSUMS = True


if __name__ == '__main__':
  tfds.testing.test_main()
