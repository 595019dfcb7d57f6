"""Fingerprints: imagehash's phash bit for bit, batched; a digest of decoded pixels."""

import io
import os
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
import pytest

from skinjax.data import image_hash, synthetic

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('SKINJAX_SHARED_DATA', REPO.parent / 'shared' / 'data'))


def library_phash(image: Image.Image) -> int:
  return int(str(imagehash.phash(image)), 16)


def synthetic_images(count, size=(120, 90)):
  rng = np.random.default_rng(0)
  appearances = list(synthetic.APPEARANCES.values())
  return [synthetic.draw_lesion(rng, size[1], size[0], appearances[i % len(appearances)],
                                synthetic.LesionShape.random(rng, appearances[i % 10]))[0]
          for i in range(count)]


def test_batched_phash_equals_imagehash_on_synthetic_images():
  images = synthetic_images(40)
  expected = [library_phash(Image.fromarray(image)) for image in images]
  assert image_hash.phash(images).tolist() == expected


@pytest.mark.skipif(not (SHARED_DATA / 'ISIC9-sample').is_dir(),
                    reason=f'real dataset samples not found at {SHARED_DATA}')
def test_batched_phash_equals_imagehash_on_real_images():
  """The 36 ISIC9-sample images (180x180), 200 HAM10000 images (200x150) and the 12 PH2
  BMPs (765x574), hashed in one batch each."""
  files = (sorted((SHARED_DATA / 'ISIC9-sample').rglob('*.jpg')) +
           sorted((SHARED_DATA / 'HAM10000' / 'HAM10000_images_part_1').glob('*.jpg'))[:200] +
           sorted((SHARED_DATA / 'PH2-sample').rglob('*_Dermoscopic_Image/*.bmp')))
  assert len(files) == 36 + 200 + 12
  found = image_hash.fingerprints(files, lambda f: np.asarray(Image.open(f).convert('RGB')),
                                  batch_size=64)
  assert found.phash.tolist() == [library_phash(Image.open(f)) for f in files]


def test_a_png_resaved_from_decoded_pixels_has_the_same_digest():
  image = synthetic_images(1)[0]
  jpeg = io.BytesIO()
  Image.fromarray(image).save(jpeg, format='JPEG', quality=90)
  decoded = np.asarray(Image.open(io.BytesIO(jpeg.getvalue())))
  png = io.BytesIO()
  Image.fromarray(decoded).save(png, format='PNG')
  resaved = np.asarray(Image.open(io.BytesIO(png.getvalue())))
  assert image_hash.pixel_digest(resaved) == image_hash.pixel_digest(decoded)
  # A second JPEG encoding of the same pixels decodes to other pixels: not exact.
  again = io.BytesIO()
  Image.fromarray(decoded).save(again, format='JPEG', quality=90)
  assert image_hash.pixel_digest(np.asarray(Image.open(again))) != (
      image_hash.pixel_digest(decoded))


def test_the_digest_sees_the_shape_not_only_the_bytes():
  pixels = np.arange(48, dtype=np.uint8)
  assert image_hash.pixel_digest(pixels.reshape(4, 4, 3)) != (
      image_hash.pixel_digest(pixels.reshape(2, 8, 3)))


def test_hamming_counts_differing_bits():
  hashes = np.array([0, 1, 0xFFFF_FFFF_FFFF_FFFF, 0b1011], np.uint64)
  assert image_hash.hamming(hashes[:, None], hashes[None]).tolist() == [
      [0, 1, 64, 3], [1, 0, 63, 2], [64, 63, 0, 61], [3, 2, 61, 0]]


def test_a_squashed_re_encoded_copy_hashes_within_the_threshold():
  """A 4:3 image squashed to a square and saved at JPEG quality 60: the thumbnail ignores
  the aspect ratio, so only the re-encoding moves the hash."""
  image = synthetic_images(1, size=(200, 150))[0]
  buffer = io.BytesIO()
  Image.fromarray(image).resize((180, 180), Image.BILINEAR).save(buffer, format='JPEG',
                                                                 quality=60)
  copy = np.asarray(Image.open(buffer))
  distance = image_hash.hamming(*image_hash.phash([image, copy]))
  assert distance <= image_hash.NEAR_DUPLICATE_BITS
