"""Synthetic stand-ins for the three public layouts, with procedurally drawn lesions.

Each image shows one lesion on skin: an irregular outline (a radius modulated by a few
random harmonics), a class-dependent colour and texture (network, globules, streaks,
vessels), skin-tone background with dermoscopy's dark corners, and hairs drawn over
everything. The lesion mask is exactly the painted lesion region (hairs cross it without
changing it), so segmentation targets are right and classes are learnable.

`write_all(root)` writes HAM10000/, PH2/ and ISIC9/ under `root`, each in the public
download's layout, so the real TFDS builders read them as they read a user's download.
"""

import collections
import csv
import dataclasses
import io
import itertools
import json
import os
from pathlib import Path

import numpy as np
import openpyxl
from PIL import Image


@dataclasses.dataclass(frozen=True)
class Appearance:
  colour: tuple[int, int, int]  # mean lesion RGB
  irregularity: float  # amplitude of the outline's harmonics
  texture: str  # 'plain', 'network', 'globules', 'streaks', 'vessels', 'scale'
  size: float  # mean radius as a fraction of the shorter image side


APPEARANCES = {
    'nv': Appearance((120, 80, 55), 0.06, 'network', 0.22),
    'mel': Appearance((60, 40, 45), 0.28, 'streaks', 0.28),
    'bkl': Appearance((150, 115, 80), 0.12, 'scale', 0.25),
    'bcc': Appearance((185, 120, 130), 0.16, 'vessels', 0.20),
    'akiec': Appearance((200, 120, 105), 0.18, 'scale', 0.18),
    'df': Appearance((165, 110, 95), 0.05, 'plain', 0.14),
    'vasc': Appearance((170, 40, 60), 0.08, 'globules', 0.16),
    'squamous': Appearance((215, 165, 140), 0.22, 'scale', 0.21),
    'seborrheic': Appearance((95, 70, 50), 0.10, 'globules', 0.24),
    'atypical': Appearance((95, 60, 45), 0.17, 'globules', 0.26),
}
ISIC9_ROOT = 'Skin cancer ISIC The International Skin Imaging Collaboration'
HAM10000_CLASSES = {name: APPEARANCES[name] for name in
                    ('akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc')}
PH2_CLASSES = {'Common Nevus': APPEARANCES['nv'], 'Atypical Nevus': APPEARANCES['atypical'],
               'Melanoma': APPEARANCES['mel']}
ISIC9_CLASSES = {
    'actinic keratosis': APPEARANCES['akiec'], 'basal cell carcinoma': APPEARANCES['bcc'],
    'dermatofibroma': APPEARANCES['df'], 'melanoma': APPEARANCES['mel'],
    'nevus': APPEARANCES['nv'], 'pigmented benign keratosis': APPEARANCES['bkl'],
    'seborrheic keratosis': APPEARANCES['seborrheic'],
    'squamous cell carcinoma': APPEARANCES['squamous'],
    'vascular lesion': APPEARANCES['vasc'],
}


@dataclasses.dataclass(frozen=True)
class LesionShape:
  """Outline of one lesion, reusable for several views of it (HAM10000's lesion_id)."""

  centre: tuple[float, float]  # (row, col) as fractions of the image
  radius: float  # fraction of the shorter side
  harmonics: tuple[tuple[int, float, float], ...]  # (k, amplitude, phase)

  @classmethod
  def random(cls, rng, appearance: Appearance):
    harmonics = tuple((k, rng.uniform(0, appearance.irregularity) / (1 + 0.3 * k),
                       rng.uniform(0, 2 * np.pi)) for k in range(2, 8))
    return cls(centre=tuple(rng.uniform(0.4, 0.6, 2)),
               radius=appearance.size * rng.uniform(0.8, 1.25), harmonics=harmonics)

  def view(self, rng):
    """The same lesion photographed again: slightly moved, turned and scaled."""
    turn = rng.uniform(0, 2 * np.pi)
    return dataclasses.replace(
        self, centre=tuple(np.clip(np.array(self.centre) + rng.normal(0, 0.03, 2), 0.3, 0.7)),
        radius=self.radius * rng.uniform(0.9, 1.1),
        harmonics=tuple((k, a, p + k * turn) for k, a, p in self.harmonics))


def draw_lesion(rng, height: int, width: int, appearance: Appearance,
                shape: LesionShape) -> tuple[np.ndarray, np.ndarray]:
  """Returns (uint8[H, W, 3] image, bool[H, W] exact lesion mask)."""
  rows, cols = np.mgrid[:height, :width].astype(np.float32)
  side = min(height, width)
  dy = (rows - shape.centre[0] * height) / side
  dx = (cols - shape.centre[1] * width) / side
  distance, angle = np.hypot(dx, dy), np.arctan2(dy, dx)
  boundary = shape.radius * (1 + sum(a * np.cos(k * angle + p) for k, a, p in shape.harmonics))
  mask = distance < boundary
  depth = np.clip(1 - distance / np.maximum(boundary, 1e-6), 0, 1)  # 1 at the centre

  skin = np.array([rng.uniform(200, 235), rng.uniform(150, 185), rng.uniform(120, 155)])
  vignette = np.clip(1.25 - 0.9 * np.hypot((rows / height - 0.5), (cols / width - 0.5)), 0, 1)
  image = skin * vignette[..., None] + rng.normal(0, 4, (height, width, 3))

  colour = np.array(appearance.colour, np.float32) * rng.uniform(0.85, 1.15)
  colour = colour * rng.uniform(0.95, 1.05, 3)  # a little hue jitter, not a new colour
  lesion = colour * (0.8 + 0.35 * (1 - depth))[..., None]  # darker towards the centre
  texture = _texture(rng, appearance.texture, rows, cols, side, angle, depth)
  lesion = lesion * texture[..., None] + rng.normal(0, 5, (height, width, 3))
  image = np.where(mask[..., None], lesion, image)
  _draw_hairs(rng, image, height, width)
  return np.clip(image, 0, 255).astype(np.uint8), mask


def _texture(rng, kind, rows, cols, side, angle, depth):
  if kind == 'network':
    period = side * rng.uniform(0.04, 0.07)
    return 1 - 0.18 * (np.sin(rows / period * np.pi) * np.sin(cols / period * np.pi)) ** 2
  if kind == 'streaks':
    return 1 - 0.35 * (np.cos(angle * rng.integers(9, 16)) > 0.6) * (depth < 0.5)
  if kind == 'globules':
    texture = np.ones_like(rows)
    for _ in range(rng.integers(15, 30)):
      r, c = rng.uniform(0.2, 0.8) * rows.shape[0], rng.uniform(0.2, 0.8) * rows.shape[1]
      texture = np.where(np.hypot(rows - r, cols - c) < side * 0.025, 0.55, texture)
    return texture
  if kind == 'vessels':
    return 1 - 0.3 * (np.abs(np.sin(rows / side * 25 + np.sin(cols / side * 9) * 2)) < 0.12)
  if kind == 'scale':
    return 1 + 0.25 * (rng.random(rows.shape) > 0.93)
  return np.ones_like(rows)


def _draw_hairs(rng, image, height, width):
  for _ in range(rng.integers(0, 6)):
    start, control, end = rng.uniform(0, 1, (3, 2)) * [height, width]
    t = np.linspace(0, 1, 4 * (height + width))[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t ** 2 * end
    colour = rng.uniform(25, 70) * np.array([1.0, 0.8, 0.65])  # dark brown
    for offset in range(rng.integers(1, 3)):
      r = np.clip(points[:, 0].astype(int) + offset, 0, height - 1)
      c = np.clip(points[:, 1].astype(int), 0, width - 1)
      image[r, c] = colour


def _save(array, path: Path, **kwargs):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path, **kwargs)


def write_ham10000(root, *, lesions_per_class=None, image_size=(200, 150), mask_scale=1,
                   max_views=3, seed=0, cross_lesion_copies=0) -> Path:
  """HAM10000's layout: metadata CSV, two image folders, 8-bit {0, 255} mask PNGs.

  Some lesions get up to `max_views` images (new views of one outline), as in HAM10000.
  image_size is (width, height); masks are mask_scale times larger (the shared copy's
  200x150 images come with 600x450 masks). cross_lesion_copies: that many images copied
  byte for byte (with their masks) under a new image id and a new lesion id, same
  diagnosis, listed in `<root>/planted.json` (kind, copy and original image ids).
  """
  root = Path(root)
  rng = np.random.default_rng(seed)
  lesions_per_class = lesions_per_class or {'nv': 60, 'mel': 30, 'bkl': 30, 'bcc': 20,
                                            'akiec': 16, 'vasc': 12, 'df': 12}
  width, height = image_size
  rows = []
  image_number, lesion_number = 24306, 0
  for dx, count in lesions_per_class.items():
    appearance = HAM10000_CLASSES[dx]
    for _ in range(count):
      lesion_number += 1
      shape = LesionShape.random(rng, appearance)
      age = '' if rng.random() < 0.05 else f'{5 * rng.integers(2, 18)}.0'
      sex = str(rng.choice(['male', 'female']))
      localization = str(rng.choice(['back', 'trunk', 'face', 'lower extremity', 'scalp']))
      for view in range(min(rng.choice([1, 1, 2, 3]), max_views)):
        view_shape = shape if view == 0 else shape.view(rng)
        big_image, big_mask = draw_lesion(rng, height * mask_scale, width * mask_scale,
                                          appearance, view_shape)
        image_id = f'ISIC_{image_number:07d}'
        image_number += 1
        rows.append({'lesion_id': f'HAM_{lesion_number:07d}', 'image_id': image_id, 'dx': dx,
                     'dx_type': str(rng.choice(['histo', 'follow_up', 'consensus'])),
                     'age': age, 'sex': sex, 'localization': localization})
        image = Image.fromarray(big_image).resize((width, height), Image.BILINEAR)
        part = 1 if len(rows) % 2 else 2
        _save(np.asarray(image), root / f'HAM10000_images_part_{part}' / f'{image_id}.jpg',
              quality=92)
        _save((big_mask * 255).astype(np.uint8),
              root / 'HAM10000_segmentations_lesion_tschandl' / f'{image_id}_segmentation.png')
  order = rng.permutation(len(rows))
  if cross_lesion_copies:
    planted = []
    for k, original in enumerate(rows[:cross_lesion_copies]):
      lesion_number += 1
      copy = dict(original, image_id=f'ISIC_{image_number:07d}',
                  lesion_id=f'HAM_{lesion_number:07d}')
      image_number += 1
      source = next(root.glob(f'HAM10000_images_part_*/{original["image_id"]}.jpg'))
      (source.parent / f'{copy["image_id"]}.jpg').write_bytes(source.read_bytes())
      masks = root / 'HAM10000_segmentations_lesion_tschandl'
      (masks / f'{copy["image_id"]}_segmentation.png').write_bytes(
          (masks / f'{original["image_id"]}_segmentation.png').read_bytes())
      rows.append(copy)
      planted.append({'kind': 'cross_lesion', 'copy': copy['image_id'],
                      'original': original['image_id']})
    order = np.concatenate([order, np.arange(len(order), len(rows))])
    (root / PLANTED).write_text(json.dumps(planted, indent=1) + '\n')
  with open(root / 'HAM10000_metadata.csv', 'w', newline='') as file:
    writer = csv.DictWriter(file, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows[i] for i in order)
  return root


def write_ph2(root, *, cases_per_class=None, image_size=(256, 192), seed=1) -> Path:
  """PH2's layout: per-case folders with a 24-bit BMP image and a 1-bit BMP lesion mask,
  and PH2_dataset.xlsx with legend rows above the header and X marks."""
  root = Path(root)
  rng = np.random.default_rng(seed)
  cases_per_class = cases_per_class or {'Common Nevus': 16, 'Atypical Nevus': 16,
                                        'Melanoma': 8}
  width, height = image_size
  sheet_rows = []
  number = 1
  for diagnosis, count in cases_per_class.items():
    appearance = PH2_CLASSES[diagnosis]
    for _ in range(count):
      case = f'IMD{number:03d}'
      number += 1
      image, mask = draw_lesion(rng, height, width, appearance, LesionShape.random(rng, appearance))
      folder = root / 'PH2 Dataset images' / case
      _save(image, folder / f'{case}_Dermoscopic_Image' / f'{case}.bmp')
      Image.fromarray(mask).convert('1').save(_mkdir(folder / f'{case}_lesion') /
                                              f'{case}_lesion.bmp')
      sheet_rows.append([case, 'Melanoma' if diagnosis == 'Melanoma' else None] + [
          'X' if column == diagnosis else None for column in PH2_CLASSES])
  workbook = openpyxl.Workbook()
  sheet = workbook.active
  sheet.title = 'Folha1'
  sheet.cell(row=2, column=6, value='Legends')
  sheet.cell(row=12, column=3, value='Clinical Diagnosis')
  sheet.append(['Image Name', 'Histological Diagnosis', *PH2_CLASSES, 'Asymmetry\n(0/1/2)'])
  for row in (sheet_rows[i] for i in rng.permutation(len(sheet_rows))):
    sheet.append(row)
  workbook.save(root / 'PH2_dataset.xlsx')
  return root


def _mkdir(path: Path) -> Path:
  path.mkdir(parents=True, exist_ok=True)
  return path


# The ISIC9 folder each HAM10000 diagnosis is filed under (for planted cross-dataset copies).
ISIC9_FOLDER_OF_HAM10000 = {
    'akiec': 'actinic keratosis', 'bcc': 'basal cell carcinoma',
    'bkl': 'pigmented benign keratosis', 'df': 'dermatofibroma', 'mel': 'melanoma',
    'nv': 'nevus', 'vasc': 'vascular lesion'}
# Crops that duplicates.find_pairs finds (skinjax.data.crop_match: up to 12.5% per side).
NEAR_COPY_CROP = 0.08
PLANTED = 'planted.json'  # beside the layout's own folder: what write_isic9 planted


def altered_copy(image: np.ndarray, rng, *, size: tuple[int, int] | None = None,
                 max_crop: float = 0.10, quality: int = 60) -> bytes:
  """JPEG bytes of a near-duplicate of uint8[H, W, 3] `image`: each side cropped by up to
  max_crop of the image, brightness and contrast changed by up to 15%, resized to `size`
  (width, height; default: the image's own size, so a crop is stretched back) and saved
  at JPEG `quality`."""
  height, width = image.shape[:2]
  left, top, right, bottom = rng.uniform(0, max_crop, 4)
  picture = Image.fromarray(image).crop((
      round(left * width), round(top * height), width - round(right * width),
      height - round(bottom * height)))
  picture = picture.resize(size or (width, height), Image.BILINEAR)
  pixels = np.asarray(picture, np.float32)
  mean = pixels.mean()
  pixels = (pixels - mean) * rng.uniform(0.85, 1.15) + mean * rng.uniform(0.85, 1.15)
  buffer = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format='JPEG',
                                                                 quality=quality)
  return buffer.getvalue()


def write_isic9(root, *, train_per_class=10, test_per_class=2, image_size=(180, 180),
                seed=2, copies_in_two_classes=0, copies_across_splits=0, renamed_copies=0,
                near_copies=0, ham10000=None, ham10000_copies=0) -> Path:
  """The Kaggle 9-class ISIC layout: {Train,Test}/<class name with spaces>/ISIC_*.jpg.

  The Kaggle set's faults can be planted (each a count; 0 plants none, and the layout is
  then what it always was):
  - copies_in_two_classes: Train images copied byte for byte, same file name, into the
    next class folder of Train (a label conflict);
  - copies_across_splits: Train images copied byte for byte, same name, into Test/ under
    their class (a split leak);
  - renamed_copies: Train images copied byte for byte beside themselves as
    `ISIC_xxxxxxx(1).jpg`;
  - near_copies: `altered_copy`s (cropped by up to NEAR_COPY_CROP per side, re-lit,
    stretched to 4:3, JPEG quality 60)
    under a new image id, same class, alternately in Test/ and Train/;
  - ham10000, ham10000_copies: images of the HAM10000 layout at `ham10000` squashed to
    image_size and re-encoded (as the shared ISIC9 copy's are), keeping their image ids,
    filed under the class of their diagnosis, alternately in Train/ and Test/.
  What was planted is listed in `<root>/planted.json` (outside the Kaggle folder, which the
  builder reads): rows of kind, copy (path under the Kaggle folder) and original (a path
  there, or 'HAM10000/<image id>').
  """
  root = Path(root)
  rng = np.random.default_rng(seed)
  base = root / ISIC9_ROOT
  width, height = image_size
  number = 1
  written = {name: [] for name in ISIC9_CLASSES}  # class -> Train paths
  for diagnosis, appearance in ISIC9_CLASSES.items():
    for source, count in (('Train', train_per_class), ('Test', test_per_class)):
      for _ in range(count):
        image, _ = draw_lesion(rng, height, width, appearance,
                               LesionShape.random(rng, appearance))
        path = base / source / diagnosis / f'ISIC_{number:07d}.jpg'
        _save(image, path, quality=92)
        if source == 'Train':
          written[diagnosis].append(path)
        number += 1
  faults = (copies_in_two_classes, copies_across_splits, renamed_copies, near_copies,
            ham10000_copies)
  if any(faults):
    _plant_isic9_faults(root, written, number, image_size, seed, *faults, ham10000)
  return root


def _plant_isic9_faults(root, written, number, image_size, seed, two_classes, two_splits,
                        renamed, near, ham_copies, ham10000):
  """The faults of write_isic9, each planted on other Train images, drawn in turn from
  the classes (a second generator: the layout itself is unchanged)."""
  rng = np.random.default_rng([seed, 13])
  base = root / ISIC9_ROOT
  classes = list(ISIC9_CLASSES)
  originals = [path for group in zip(*written.values()) for path in group]  # class by class
  needed = two_classes + two_splits + renamed + near
  if needed > len(originals):
    raise ValueError(f'{needed} planted copies need as many Train images; there are '
                     f'{len(originals)}')
  planted = []

  def plant(kind, original, copy, data=None):
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(original.read_bytes() if data is None else data)
    planted.append({'kind': kind, 'copy': copy.relative_to(base).as_posix(),
                    'original': (original.relative_to(base).as_posix()
                                 if isinstance(original, Path) and original.is_relative_to(base)
                                 else original)})

  chosen = iter(originals)
  for _ in range(two_classes):
    original = next(chosen)
    other = classes[(classes.index(original.parent.name) + 1) % len(classes)]
    plant('two_classes', original, base / 'Train' / other / original.name)
  for _ in range(two_splits):
    original = next(chosen)
    plant('two_splits', original, base / 'Test' / original.parent.name / original.name)
  for _ in range(renamed):
    original = next(chosen)
    plant('renamed', original, original.with_name(f'{original.stem}(1).jpg'))
  for k in range(near):
    original = next(chosen)
    source = 'Test' if k % 2 == 0 else 'Train'
    image = np.asarray(Image.open(original).convert('RGB'))
    copy = base / source / original.parent.name / f'ISIC_{number:07d}.jpg'
    number += 1
    plant('near', original, copy, altered_copy(
        image, rng, size=(image.shape[1] * 4 // 3, image.shape[0]), max_crop=NEAR_COPY_CROP))
  if ham_copies:
    if ham10000 is None:
      raise ValueError('ham10000_copies needs ham10000, the HAM10000 layout to copy from')
    by_dx = collections.defaultdict(list)
    for row in sorted(csv.DictReader(open(Path(ham10000) / 'HAM10000_metadata.csv')),
                      key=lambda row: row['image_id']):
      by_dx[row['dx']].append(row)
    # One of each diagnosis in turn, so that the copies meet every class.
    rows = [row for turn in itertools.zip_longest(*by_dx.values()) for row in turn if row]
    if ham_copies > len(rows):
      raise ValueError(f'{ham_copies} HAM10000 copies asked; the layout has {len(rows)}')
    for k, row in enumerate(rows[:ham_copies]):
      image_path = next(Path(ham10000).glob(f'HAM10000_images_part_*/{row["image_id"]}.jpg'))
      picture = Image.open(image_path).convert('RGB').resize(image_size, Image.BILINEAR)
      buffer = io.BytesIO()
      picture.save(buffer, format='JPEG', quality=90)
      source = 'Train' if k % 2 == 0 else 'Test'
      copy = base / source / ISIC9_FOLDER_OF_HAM10000[row['dx']] / image_path.name
      plant('ham10000', f'HAM10000/{row["image_id"]}', copy, buffer.getvalue())
  (root / PLANTED).write_text(json.dumps(planted, indent=1) + '\n')


def write_all(root, *, seed=0) -> dict[str, Path]:
  """Writes the three layouts under `root`; returns dataset name -> manual directory. The
  ISIC9 layout has the Kaggle set's faults planted (a few of each kind, and copies of
  HAM10000 images), so that a build of it meets them."""
  root = Path(root)
  ham10000 = write_ham10000(root / 'HAM10000', seed=seed)
  return {'ham10000': ham10000,
          'ph2': write_ph2(root / 'PH2', seed=seed + 1),
          'isic9': write_isic9(root / 'ISIC9', seed=seed + 2, copies_in_two_classes=3,
                               copies_across_splits=3, renamed_copies=2, near_copies=3,
                               ham10000=ham10000, ham10000_copies=10)}


def ensure_written(root, *, seed=0) -> dict[str, Path]:
  """`write_all` once: a finished set is marked by a file written last."""
  root = Path(root)
  marker = root / 'COMPLETE'
  if not marker.exists():
    paths = write_all(root, seed=seed)
    marker.write_text(f'seed={seed}\n')
    return paths
  return {'ham10000': root / 'HAM10000', 'ph2': root / 'PH2', 'isic9': root / 'ISIC9'}
