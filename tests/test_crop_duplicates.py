"""Copies cut from an image (up to 10% of each side, asymmetric too) match their original;
an unrelated image of the same kind does not (skinjax.data.crop_match via find_pairs)."""

import io

import numpy as np
from PIL import Image
import pytest

from skinjax.data import duplicates, image_hash, synthetic

CROPS = {  # (left, top, right, bottom), fractions of the original
    '5% per side': (0.05, 0.05, 0.05, 0.05),
    '10% per side': (0.10, 0.10, 0.10, 0.10),
    'asymmetric': (0.10, 0.0, 0.03, 0.07),
}


def lesions(count, seed=0, size=(200, 150)):
  rng = np.random.default_rng(seed)
  appearances = list(synthetic.APPEARANCES.values())
  return [synthetic.draw_lesion(rng, size[1], size[0], appearances[k % len(appearances)],
                                synthetic.LesionShape.random(rng, appearances[k % 10]))[0]
          for k in range(count)]


def cropped(image, left, top, right, bottom, quality=None):
  height, width = image.shape[:2]
  picture = Image.fromarray(image).crop((round(left * width), round(top * height),
                                         width - round(right * width),
                                         height - round(bottom * height)))
  if quality is not None:  # squashed to a square and re-encoded, as ISIC9's copies are
    buffer = io.BytesIO()
    picture.resize((180, 180), Image.BILINEAR).save(buffer, format='JPEG', quality=quality)
    picture = Image.open(buffer)
  return np.asarray(picture.convert('RGB'))


def fingerprints(images):
  return image_hash.fingerprints(images, np.asarray)


@pytest.fixture(scope='module')
def originals():
  return lesions(6)


@pytest.mark.parametrize('name', CROPS)
def test_a_cropped_copy_matches_its_original(originals, name):
  copies = [cropped(image, *CROPS[name]) for image in originals]
  whole = duplicates.find_pairs(fingerprints(originals), fingerprints(copies), crops=False)
  pairs = duplicates.find_pairs(fingerprints(originals), fingerprints(copies))
  assert (pairs.left == pairs.right).all()
  assert pairs.right.tolist() == list(range(len(originals)))
  assert len(whole) < len(pairs)  # the full-frame rule alone misses some
  crop_only = pairs.cropped != 0
  assert (pairs.cropped[crop_only] == duplicates.RIGHT_IS_CROP).all()
  # The window found is the crop, to the grid's step (1.25%).
  np.testing.assert_allclose(pairs.crop[crop_only],
                             np.broadcast_to(CROPS[name], pairs.crop[crop_only].shape),
                             atol=0.0125 + 1e-6)


def test_a_cropped_squashed_re_encoded_copy_matches_either_way_round(originals):
  copies = [cropped(image, 0.08, 0.02, 0.04, 0.06, quality=60) for image in originals]
  pairs = duplicates.find_pairs(fingerprints(copies), fingerprints(originals))
  assert pairs.left.tolist() == pairs.right.tolist() == list(range(len(originals)))
  assert (pairs.cropped == duplicates.LEFT_IS_CROP).all()


def test_within_one_set_the_crop_pairs_with_its_original_only(originals):
  others = lesions(6, seed=1)
  images = originals + others + [cropped(originals[2], *CROPS['asymmetric'])]
  pairs = duplicates.find_pairs(fingerprints(images))
  assert list(zip(pairs.left.tolist(), pairs.right.tolist())) == [(2, len(images) - 1)]
  assert pairs.cropped.tolist() == [duplicates.RIGHT_IS_CROP]


def test_an_unrelated_image_of_the_same_kind_is_not_a_crop(originals):
  others = lesions(6, seed=1)
  crops = [cropped(image, *CROPS['10% per side']) for image in others]
  pairs = duplicates.find_pairs(fingerprints(originals), fingerprints(crops))
  assert len(pairs) == 0


def test_swapping_a_pair_swaps_which_image_is_the_crop(originals):
  copies = [cropped(originals[0], *CROPS['asymmetric'])]
  pairs = duplicates.find_pairs(fingerprints(originals[:1]), fingerprints(copies))
  assert pairs.cropped.tolist() == [duplicates.RIGHT_IS_CROP]
  assert pairs.swapped().cropped.tolist() == [duplicates.LEFT_IS_CROP]
  assert pairs.swapped().left.tolist() == pairs.right.tolist()


def test_exact_only_finds_no_crops(originals):
  copies = [cropped(image, *CROPS['10% per side']) for image in originals]
  assert len(duplicates.find_pairs(fingerprints(originals), fingerprints(copies),
                                   max_distance=-1)) == 0
