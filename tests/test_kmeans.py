"""k-means segmentation: scikit-learn's inertia on real pixels, and the lesion-cluster rule."""

import glob
import os

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn.cluster import KMeans

from skinjax.explain.kmeans import kmeans, segment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAM_IMAGES = os.path.join(REPO, '..', 'shared', 'data', 'HAM10000', 'HAM10000_images_part_1')


def test_inertia_is_within_one_percent_of_scikit_learn_on_real_lesion_pixels():
  files = sorted(glob.glob(os.path.join(HAM_IMAGES, 'ISIC_*.jpg')))[:6]
  if not files:
    pytest.skip(f'no HAM10000 images in {HAM_IMAGES}')
  # Every pixel of six 200x150 dermoscopy images, RGB in [0, 1].
  points = np.stack([np.asarray(Image.open(f).convert('RGB')) for f in files])
  points = points.reshape(len(files), -1, 3).astype(np.float32) / 255
  # Same fair setting on both sides: 4 k-means++ starts (the best kept), sklearn's max_iter
  # and tol. With one start each, 1 image in 40 lands in another local optimum.
  result = kmeans(points, jax.random.key(0), k=3, n_init=4)
  for i, image_points in enumerate(points):
    reference = KMeans(3, init='k-means++', n_init=4, max_iter=300, tol=1e-4,
                       random_state=0).fit(image_points.astype(np.float64))
    assert float(result.inertia[i]) == pytest.approx(reference.inertia_, rel=0.01), files[i]
  # Inertia is the within-cluster sum of squares of the returned labels and centres.
  centres = np.asarray(result.centres)[0][np.asarray(result.labels)[0]]
  assert float(result.inertia[0]) == pytest.approx(((points[0] - centres) ** 2).sum(), rel=1e-4)


def test_the_lesion_is_the_dark_central_cluster_not_the_dark_vignette():
  size = 64
  rows, cols = np.mgrid[:size, :size]
  radius = np.hypot(rows - (size - 1) / 2, cols - (size - 1) / 2)
  image = np.empty((size, size, 3), np.uint8)
  image[:] = (205, 150, 135)  # skin
  lesion = radius < 14
  image[lesion] = (95, 60, 50)
  image[radius > 40] = (8, 8, 8)  # the dermoscope's black corners, darker than the lesion
  masks = segment(np.stack([image, image[::-1, ::-1]]), jax.random.key(0))
  assert masks.shape == (2, size, size) and masks.dtype == bool
  np.testing.assert_array_equal(masks[0], lesion)
  np.testing.assert_array_equal(masks[1], lesion[::-1, ::-1])
