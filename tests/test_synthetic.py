"""The synthetic layouts: exact masks, lesion groups, learnable classes, public layouts."""

import collections
import csv
import dataclasses

import numpy as np
from PIL import Image

from skinjax.data import synthetic


def test_the_mask_is_exactly_the_painted_lesion():
  rng = np.random.default_rng(0)
  appearance = synthetic.APPEARANCES['mel']
  shape = synthetic.LesionShape.random(rng, appearance)
  image, mask = synthetic.draw_lesion(np.random.default_rng(1), 96, 128, appearance, shape)
  assert image.shape == (96, 128, 3) and mask.shape == (96, 128)
  assert 0.03 < mask.mean() < 0.6
  # The same draw with the lesion painted in white: pixels change inside the mask only
  # (hairs are drawn after the lesion, identically in both).
  white = dataclasses.replace(appearance, colour=(255, 255, 255))
  other, other_mask = synthetic.draw_lesion(np.random.default_rng(1), 96, 128, white, shape)
  np.testing.assert_array_equal(other_mask, mask)
  changed = np.any(other != image, axis=-1)
  assert not changed[~mask].any()
  assert changed[mask].mean() > 0.9


def test_ham10000_layout_groups_views_of_one_lesion(tmp_path):
  root = synthetic.write_ham10000(tmp_path, lesions_per_class={'nv': 20, 'mel': 10},
                                  image_size=(40, 30), mask_scale=3)
  rows = list(csv.DictReader(open(root / 'HAM10000_metadata.csv')))
  assert list(rows[0]) == ['lesion_id', 'image_id', 'dx', 'dx_type', 'age', 'sex',
                           'localization']
  per_lesion = collections.Counter(row['lesion_id'] for row in rows)
  assert len(per_lesion) == 30 and max(per_lesion.values()) > 1
  assert all(len({r['dx'] for r in rows if r['lesion_id'] == lesion}) == 1
             for lesion in per_lesion)
  image_id = rows[0]['image_id']
  image_path = next(root.glob(f'HAM10000_images_part_*/{image_id}.jpg'))
  assert Image.open(image_path).size == (40, 30)
  mask = Image.open(root / 'HAM10000_segmentations_lesion_tschandl' /
                    f'{image_id}_segmentation.png')
  assert mask.size == (120, 90) and set(np.unique(np.asarray(mask))) == {0, 255}


def test_ph2_layout_has_1_bit_masks_and_the_sheet(tmp_path):
  root = synthetic.write_ph2(tmp_path, cases_per_class={'Common Nevus': 1, 'Melanoma': 1},
                             image_size=(64, 48))
  masks = sorted(root.glob('PH2 Dataset images/*/*_lesion/*_lesion.bmp'))
  assert len(masks) == 2 and Image.open(masks[0]).mode == '1'
  assert (root / 'PH2_dataset.xlsx').exists()


def test_classes_are_learnable_from_lesion_colour():
  """A nearest-centroid rule on the mean lesion colour tells the 7 HAM classes apart."""
  rng = np.random.default_rng(0)

  def features(count):
    rows = []
    for label, appearance in enumerate(synthetic.HAM10000_CLASSES.values()):
      for _ in range(count):
        shape = synthetic.LesionShape.random(rng, appearance)
        image, mask = synthetic.draw_lesion(rng, 48, 64, appearance, shape)
        rows.append((image[mask].mean(axis=0), label))
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])

  train_x, train_y = features(12)
  test_x, test_y = features(8)
  centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in range(7)])
  predicted = np.argmin(((test_x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
  assert (predicted == test_y).mean() > 0.7
