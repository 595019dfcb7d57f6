r"""Paper 2's k-means lesion segmentation scored against real lesion masks.

  python benchmarks/kmeans_real_masks.py --data_dir=../shared/data [--limit=N]

HAM10000: images are 200x150 while masks are 600x450; masks are resized to the image
size with nearest neighbour and binarised (> 0). PH2 sample: 12 cases, images and masks at
the same size (one mask is a 24-bit top-down BMP; PIL reads it). Scores pool pixels over
the whole set (skinjax.metrics.SegmentationCounts): Dice, IoU and mean IoU (the mean of
lesion and background IoU), plus the mean per-image Dice.
"""

import glob
import os
import time

from absl import app, flags
import jax
import numpy as np
from PIL import Image

from skinjax.explain.kmeans import segment
from skinjax.metrics import SegmentationCounts

FLAGS = flags.FLAGS
flags.DEFINE_string('data_dir', '../shared/data', 'Folder holding HAM10000/ and PH2-sample/.')
flags.DEFINE_integer('limit', None, 'Score only the first N HAM10000 images (sorted by id).')
flags.DEFINE_integer('batch_size', 8, 'Images per k-means call; each call runs until its '
                     'slowest image converges, so small batches waste less.')
flags.DEFINE_integer('k', 3, 'Clusters (3 in paper 2).')
flags.DEFINE_integer('seed', 0, 'Seed of the k-means++ initialisation.')


def ham10000_pairs(data_dir, limit):
  """[(image path, mask path)] sorted by image id."""
  root = os.path.join(data_dir, 'HAM10000')
  images = sorted(glob.glob(os.path.join(root, 'HAM10000_images_part_*', 'ISIC_*.jpg')),
                  key=os.path.basename)
  if not images:
    raise FileNotFoundError(f'--data_dir: no HAM10000_images_part_*/ISIC_*.jpg under {root}')
  pairs = []
  for image in images[:limit]:
    image_id = os.path.splitext(os.path.basename(image))[0]
    pairs.append((image, os.path.join(root, 'HAM10000_segmentations_lesion_tschandl',
                                      f'{image_id}_segmentation.png')))
  return pairs


def ph2_pairs(data_dir):
  root = os.path.join(data_dir, 'PH2-sample', 'PH2 Dataset images')
  cases = sorted(os.listdir(root))
  if not cases:
    raise FileNotFoundError(f'--data_dir: no PH2 cases under {root}')
  return [(os.path.join(root, c, f'{c}_Dermoscopic_Image', f'{c}.bmp'),
           os.path.join(root, c, f'{c}_lesion', f'{c}_lesion.bmp')) for c in cases]


def load_pair(image_path, mask_path):
  """uint8[H, W, 3] image and bool[H, W] mask at the image's size."""
  image = Image.open(image_path).convert('RGB')
  mask = Image.open(mask_path).convert('L')
  if mask.size != image.size:
    mask = mask.resize(image.size, Image.NEAREST)
  return np.asarray(image), np.asarray(mask) > 0


def score(pairs, batch_size, key, k):
  """Pooled SegmentationCounts of k-means masks over `pairs`, and the seconds taken."""
  counts = SegmentationCounts.empty()
  start = time.time()
  by_size = {}
  for pair in pairs:
    image, mask = load_pair(*pair)
    by_size.setdefault(image.shape, []).append((image, mask))
    group = by_size[image.shape]
    if len(group) == batch_size:
      counts, key = _add(counts, group, key, k), jax.random.fold_in(key, 1)
      group.clear()
  for group in by_size.values():
    if group:
      counts, key = _add(counts, group, key, k), jax.random.fold_in(key, 1)
  return counts.compute(), time.time() - start


def _add(counts, group, key, k):
  images = np.stack([image for image, _ in group])
  masks = np.stack([mask for _, mask in group])
  predicted = segment(images, key, k=k)
  return counts.merge(SegmentationCounts.from_masks(predicted, masks))


def main(argv):
  del argv
  key = jax.random.key(FLAGS.seed)
  for name, pairs in (('HAM10000', ham10000_pairs(FLAGS.data_dir, FLAGS.limit)),
                      ('PH2 sample', ph2_pairs(FLAGS.data_dir))):
    result, seconds = score(pairs, FLAGS.batch_size, key, FLAGS.k)
    print(f"{name}: {result['images']} images, Dice {result['dice']:.4f}, IoU "
          f"{result['iou']:.4f}, mean IoU {result['mean_iou']:.4f}, mean per-image Dice "
          f"{result['mean_image_dice']:.4f} ({seconds:.0f} s, "
          f"{result['images'] / seconds:.1f} images/s)")


if __name__ == '__main__':
  app.run(main)
