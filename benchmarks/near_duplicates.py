r"""Precision and recall of the near-duplicate rule, on planted copies and on real data.

  python benchmarks/near_duplicates.py --data_dir=../shared/data [--originals=300]

Planted: `--originals` HAM10000 images of distinct lesions, each copied once per
transform (resized to a square, JPEG quality 60, brightness and contrast +-20%, crops up
to 10% per side, also asymmetric and combined with the others);
recall is the share of copies matched to their original; precision is the share of
matched (original, copy) pairs that are an original and its own copy. Real: every ISIC9
file against every HAM10000 image; the truth is the file name (an ISIC9 file named after
a HAM10000 image id is that image), so recall is the share of name pairs matched and
precision the share of matches whose names agree; matches between other names are counted
apart when HAM10000 gives both images one lesion_id (another photograph of the lesion).
"""

import csv
import glob
import io
import os
import time

from absl import app, flags
import numpy as np
from PIL import Image, ImageEnhance

from skinjax.data import crop_match, duplicates, image_hash

FLAGS = flags.FLAGS
flags.DEFINE_string('data_dir', '../shared/data', 'Folder with HAM10000/ and ISIC9/.')
flags.DEFINE_integer('originals', 300, 'Planted: HAM10000 images of distinct lesions.')


def _jpeg(image, quality):
  buffer = io.BytesIO()
  image.save(buffer, format='JPEG', quality=quality)
  return Image.open(io.BytesIO(buffer.getvalue())).convert('RGB')


def _crop(image, left, top, right, bottom):
  width, height = image.size
  return image.crop((round(left * width), round(top * height), width - round(right * width),
                     height - round(bottom * height)))


TRANSFORMS = {
    'resized to 180x180 (4:3 to 1:1)': lambda im, rng: im.resize((180, 180), Image.BILINEAR),
    'resized to 600x450': lambda im, rng: im.resize((600, 450), Image.BICUBIC),
    'JPEG quality 60': lambda im, rng: _jpeg(im, 60),
    'brightness x0.8': lambda im, rng: ImageEnhance.Brightness(im).enhance(0.8),
    'brightness x1.2': lambda im, rng: ImageEnhance.Brightness(im).enhance(1.2),
    'contrast x0.8': lambda im, rng: ImageEnhance.Contrast(im).enhance(0.8),
    'contrast x1.2': lambda im, rng: ImageEnhance.Contrast(im).enhance(1.2),
    'squashed, JPEG 60, brightness/contrast +-15%': lambda im, rng: _jpeg(
        ImageEnhance.Contrast(ImageEnhance.Brightness(im.resize((180, 180))).enhance(
            rng.uniform(0.85, 1.15))).enhance(rng.uniform(0.85, 1.15)), 60),
    'cropped 2% per side': lambda im, rng: _crop(im, 0.02, 0.02, 0.02, 0.02),
    'cropped up to 3% per side (random)': lambda im, rng: _crop(im, *rng.uniform(0, .03, 4)),
    'cropped 5% per side': lambda im, rng: _crop(im, 0.05, 0.05, 0.05, 0.05),
    'cropped 10% per side': lambda im, rng: _crop(im, 0.10, 0.10, 0.10, 0.10),
    'cropped up to 10% per side (random)': lambda im, rng: _crop(im, *rng.uniform(0, .1, 4)),
    'cropped asymmetrically (10% left, 3% right, 7% bottom)': lambda im, rng: _crop(
        im, 0.10, 0.0, 0.03, 0.07),
    'cropped up to 8% per side, squashed, JPEG 60, brightness/contrast +-15%': lambda im, rng:
        _jpeg(ImageEnhance.Contrast(ImageEnhance.Brightness(
            _crop(im, *rng.uniform(0, .08, 4)).resize((180, 180))).enhance(
                rng.uniform(0.85, 1.15))).enhance(rng.uniform(0.85, 1.15)), 60),
}


def _fingerprints(images):
  return image_hash.fingerprints(images, lambda image: np.asarray(image))


def planted(ham_dir):
  rows = list(csv.DictReader(open(os.path.join(ham_dir, 'HAM10000_metadata.csv'))))
  rng = np.random.default_rng(0)
  seen, chosen = set(), []
  for row in (rows[i] for i in rng.permutation(len(rows))):
    if row['lesion_id'] not in seen:
      seen.add(row['lesion_id'])
      chosen.append(row['image_id'])
    if len(chosen) == FLAGS.originals:
      break
  files = {os.path.basename(f)[:-4]: f
           for f in glob.glob(os.path.join(ham_dir, 'HAM10000_images_part_*', '*.jpg'))}
  originals = [Image.open(files[i]).convert('RGB') for i in chosen]
  base = _fingerprints(originals)
  print(f'planted: {len(originals)} HAM10000 originals of distinct lesions, one copy each '
        'per transform')
  print('| transform | recall | of those, as a crop | precision | matched pairs |')
  print('| --- | --- | --- | --- | --- |')
  for name, transform in TRANSFORMS.items():
    copies = _fingerprints([transform(image, rng) for image in originals])
    pairs = duplicates.find_pairs(base, copies)
    true = int((pairs.left == pairs.right).sum())
    as_crop = int(((pairs.left == pairs.right) & (pairs.cropped != 0)).sum())
    # False pairs also among the originals themselves (distinct lesions).
    among = len(duplicates.find_pairs(base))
    found = len(pairs) + among
    precision = f'{true / found:.3f}' if found else '- (no match)'
    print(f'| {name} | {true / len(originals):.3f} ({true}/{len(originals)}) | {as_crop} | '
          f'{precision} | {len(pairs)} (+{among} among the originals) |')


def real(ham_dir, isic_dir):
  ham_files = sorted(glob.glob(os.path.join(ham_dir, 'HAM10000_images_part_*', '*.jpg')))
  isic_files = sorted(glob.glob(os.path.join(isic_dir, '*', '*', '*', '*.jpg')))
  lesion = {row['image_id']: row['lesion_id']
            for row in csv.DictReader(open(os.path.join(ham_dir, 'HAM10000_metadata.csv')))}
  read = lambda path: np.asarray(Image.open(path).convert('RGB'))  # noqa: E731
  start = time.perf_counter()
  ham, isic = image_hash.fingerprints(ham_files, read), image_hash.fingerprints(isic_files, read)
  pairs = duplicates.find_pairs(isic, ham)
  seconds = time.perf_counter() - start
  ham_id = [os.path.basename(f)[:-4] for f in ham_files]
  isic_id = [os.path.basename(f)[:-4].replace('(1)', '') for f in isic_files]
  named = sum(i in lesion for i in isic_id)
  same = sum(isic_id[i] == ham_id[j] for i, j in zip(pairs.left, pairs.right))
  same_lesion = sum(isic_id[i] != ham_id[j] and lesion.get(isic_id[i]) == lesion[ham_id[j]]
                    for i, j in zip(pairs.left, pairs.right))
  other = len(pairs) - same - same_lesion
  crop = pairs.cropped != 0
  print(f'real: {len(isic_files)} ISIC9 files x {len(ham_files)} HAM10000 images, '
        f'{seconds:.1f} s')
  print(f'  ISIC9 files named after a HAM10000 image: {named}; matched to it: {same} '
        f'(recall {same / named:.4f})')
  print(f'  matches: {len(pairs)}; same name {same}, another photograph of the same lesion '
        f'{same_lesion}, other {other} (precision by name {same / len(pairs):.4f}, by name '
        f'or lesion {(same + same_lesion) / len(pairs):.4f})')
  print(f'  matched only as a crop: {int(crop.sum())}; ' + ', '.join(
      f'{isic_id[i]} ~ {ham_id[j]}' for i, j in zip(pairs.left[crop], pairs.right[crop])))
  for i, j in zip(pairs.left, pairs.right):
    if isic_id[i] != ham_id[j]:
      print(f'  other name: ISIC9 {isic_files[i][len(isic_dir) + 1:]} ~ HAM10000 {ham_id[j]}'
            f' (lesions {lesion.get(isic_id[i], "-")} / {lesion[ham_id[j]]})')


def main(argv):
  del argv
  ham_dir = os.path.join(FLAGS.data_dir, 'HAM10000')
  isic_dir = os.path.join(FLAGS.data_dir, 'ISIC9')
  print(f'rule: 64-bit hashes within {image_hash.NEAR_DUPLICATE_BITS} bits and 256-bit '
        f'within {image_hash.CONFIRM_BITS}; or a crop (up to {crop_match.MAX_CROP:.1%} per '
        f'side): 64-bit within {crop_match.CANDIDATE_BITS} of a coarse window, 8x8 correlation '
        f'>= {crop_match.WINDOW_CORRELATION} at a medium one, 256-bit within '
        f'{crop_match.CONFIRM_BITS} at the refined window')
  planted(ham_dir)
  real(ham_dir, isic_dir)


if __name__ == '__main__':
  app.run(main)
