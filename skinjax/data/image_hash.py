"""Image fingerprints for finding copies: an exact-pixel digest and a perceptual hash.

- `pixel_digest`: SHA-256 of the decoded pixels and their shape. Two files have the same
  digest exactly when they decode to the same image (a PNG re-saved from a JPEG's pixels
  matches it; two JPEG encodings of one picture do not).
- `phash`: the 64-bit DCT hash of `imagehash.phash` (Zauner / hackerfactor), bit for bit:
  grey (PIL's 'L' conversion), a 32x32 Lanczos thumbnail, the 2-D DCT-II of it, the 8x8
  lowest frequencies, each bit set where its coefficient is above their median. Bit 63
  (the most significant) is coefficient [0, 0], so `int(str(imagehash.phash(im)), 16)`
  equals `phash(im)`. The thumbnail ignores the aspect ratio: a 4:3 image and a copy
  squashed to a square hash alike.

Two images are near-duplicates when their hashes differ in at most NEAR_DUPLICATE_BITS
bits (`hamming`); the threshold and its measured precision and recall are in
datasets/README.md.
"""

import hashlib
import itertools
from typing import Callable, Iterable, TypeVar

import numpy as np
from PIL import Image
import scipy.fftpack

from skinjax.data import threads

HASH_SIZE = 8
THUMBNAIL = 32  # HASH_SIZE * imagehash's highfreq_factor (4)
# Measured on planted copies and on HAM10000 x ISIC9 (datasets/README.md, "Copies").
NEAR_DUPLICATE_BITS = 4
DIGEST_BYTES = 32
T = TypeVar('T')


def pixel_digest(image: np.ndarray) -> bytes:
  """32 bytes: SHA-256 of uint8[H, W, C] pixels together with their shape."""
  image = np.ascontiguousarray(image, dtype=np.uint8)
  digest = hashlib.sha256(repr(image.shape).encode())
  digest.update(image.data)
  return digest.digest()


def grey_thumbnail(image) -> np.ndarray:
  """uint8[32, 32]: what imagehash.phash takes its DCT of, from uint8[H, W, 3] or a PIL
  image."""
  if not isinstance(image, Image.Image):
    image = Image.fromarray(np.asarray(image, np.uint8))
  return np.asarray(image.convert('L').resize((THUMBNAIL, THUMBNAIL), Image.LANCZOS))


def phash_of_thumbnails(thumbnails: np.ndarray) -> np.ndarray:
  """uint64[B] from uint8[B, 32, 32] grey thumbnails (see the module docstring)."""
  thumbnails = np.asarray(thumbnails)
  if thumbnails.ndim != 3 or thumbnails.shape[1:] != (THUMBNAIL, THUMBNAIL):
    raise ValueError(f'expected grey thumbnails [B, {THUMBNAIL}, {THUMBNAIL}], got shape '
                     f'{thumbnails.shape}')
  # The same calls as imagehash, over the batch: each image's transform is computed alone.
  dct = scipy.fftpack.dct(scipy.fftpack.dct(thumbnails, axis=1), axis=2)
  low = dct[:, :HASH_SIZE, :HASH_SIZE].reshape(len(thumbnails), -1)
  bits = low > np.median(low, axis=1, keepdims=True)
  weights = np.uint64(1) << np.arange(HASH_SIZE * HASH_SIZE - 1, -1, -1, dtype=np.uint64)
  return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def phash(images: Iterable) -> np.ndarray:
  """uint64[B]: the perceptual hash of each image (uint8[H, W, 3] arrays or PIL images)."""
  thumbnails = [grey_thumbnail(image) for image in images]
  if not thumbnails:
    return np.zeros((0,), np.uint64)
  return phash_of_thumbnails(np.stack(thumbnails))


def hamming(a, b) -> np.ndarray:
  """Bits that differ between uint64 hashes, broadcast: int[...]."""
  return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))


def fingerprint(image: np.ndarray) -> tuple[bytes, np.ndarray, tuple[int, int]]:
  """(pixel digest, grey thumbnail, (height, width)) of one uint8[H, W, 3] image."""
  image = np.asarray(image)
  return pixel_digest(image), grey_thumbnail(image), image.shape[:2]


def fingerprints(items: Iterable[T], decode: Callable[[T], np.ndarray], *,
                 batch_size: int = 256, workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
  """Digests, hashes and sizes of the images `decode(item)` gives (uint8[H, W, 3]).

  Decoding and the per-image work (digest, thumbnail) run in `workers` threads, a batch
  of items at a time, so only a batch of images and the thumbnails are held. progress: called with
  the number of images done, once per batch.
  Returns {'digest': uint8[N, 32], 'phash': uint64[N], 'size': int32[N, 2] (height,
  width)}, in the order of `items`.
  """
  digests, hashes, sizes, batch = [], [], [], []

  def flush():
    hashes.append(phash_of_thumbnails(np.stack([thumb for _, thumb, _ in batch])))
    digests.extend(digest for digest, _, _ in batch)
    sizes.extend(size for _, _, size in batch)
    if progress is not None:
      progress(len(batch))
    batch.clear()

  # A batch of items at a time: the thread pool takes all it is given at once.
  items = iter(items)
  while chunk := list(itertools.islice(items, batch_size)):
    batch.extend(threads.map_in_threads(lambda item: fingerprint(decode(item)), chunk, workers))
    flush()
  return {
      'digest': (np.frombuffer(b''.join(digests), np.uint8).reshape(-1, DIGEST_BYTES)
                 if digests else np.zeros((0, DIGEST_BYTES), np.uint8)),
      'phash': np.concatenate(hashes) if hashes else np.zeros((0,), np.uint64),
      'size': np.array(sizes, np.int32).reshape(-1, 2),
  }
