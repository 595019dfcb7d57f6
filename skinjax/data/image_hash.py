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

- `fine_hash`: the same with hash_size=16, 256 bits from a 64x64 thumbnail
  (`imagehash.phash(im, hash_size=16)`), which resolves more detail.

Two images are near-duplicates when their 64-bit hashes differ in at most
NEAR_DUPLICATE_BITS bits and their 256-bit hashes in at most CONFIRM_BITS (`hamming`,
`fine_hamming`), or when one is a crop of the other (skinjax.data.crop_match, from the
64x64 thumbnails kept in the fingerprints); the thresholds and their measured precision
and recall are in datasets/README.md.
"""

import dataclasses
import hashlib
import itertools
from typing import Callable, Iterable, TypeVar

import numpy as np
from PIL import Image
import scipy.fftpack

from skinjax.data import threads

HASH_SIZE = 8
THUMBNAIL = 32  # HASH_SIZE * imagehash's highfreq_factor (4)
FINE_HASH_SIZE = 16
FINE_WORDS = FINE_HASH_SIZE ** 2 // 64
# Near-duplicates: 64-bit hashes within NEAR_DUPLICATE_BITS (candidates) and 256-bit hashes
# within CONFIRM_BITS (the 64-bit hash alone pairs unrelated dermoscopy images, a dark
# lesion central on pale skin, by the hundred). Measured on planted copies and on
# HAM10000 x ISIC9: datasets/README.md, "Copies".
NEAR_DUPLICATE_BITS = 10
CONFIRM_BITS = 24
DIGEST_BYTES = 32
T = TypeVar('T')


def pixel_digest(image: np.ndarray) -> bytes:
  """32 bytes: SHA-256 of uint8[H, W, C] pixels together with their shape."""
  image = np.ascontiguousarray(image, dtype=np.uint8)
  digest = hashlib.sha256(repr(image.shape).encode())
  digest.update(image.data)
  return digest.digest()


def grey_thumbnail(image, side: int = THUMBNAIL) -> np.ndarray:
  """uint8[side, side]: what imagehash.phash takes its DCT of (side = 4 x hash_size), from
  uint8[H, W, 3] or a PIL image."""
  if not isinstance(image, Image.Image):
    image = Image.fromarray(np.asarray(image, np.uint8))
  return np.asarray(image.convert('L').resize((side, side), Image.LANCZOS))


def dct_bits(thumbnails: np.ndarray, hash_size: int = HASH_SIZE) -> np.ndarray:
  """bool[B, hash_size**2], imagehash's bit order, from uint8[B, 4 * hash_size, 4 *
  hash_size] grey thumbnails: the low-frequency DCT-II coefficients above their median."""
  thumbnails = np.asarray(thumbnails)
  side = 4 * hash_size
  if thumbnails.ndim != 3 or thumbnails.shape[1:] != (side, side):
    raise ValueError(f'expected grey thumbnails [B, {side}, {side}], got shape '
                     f'{thumbnails.shape}')
  # The same calls as imagehash, over the batch: each image's transform is computed alone.
  dct = scipy.fftpack.dct(scipy.fftpack.dct(thumbnails, axis=1), axis=2)
  low = dct[:, :hash_size, :hash_size].reshape(len(thumbnails), -1)
  return low > np.median(low, axis=1, keepdims=True)


def pack(bits: np.ndarray) -> np.ndarray:
  """uint64[B, bits // 64] from bool[B, bits]: the first bit is the top bit of word 0, as
  imagehash's hex string reads."""
  bits = np.asarray(bits, bool)
  words = bits.reshape(len(bits), -1, 64).astype(np.uint64)
  weights = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)
  return (words * weights).sum(axis=2, dtype=np.uint64)


def phash_of_thumbnails(thumbnails: np.ndarray) -> np.ndarray:
  """uint64[B] from uint8[B, 32, 32] grey thumbnails (see the module docstring)."""
  return pack(dct_bits(thumbnails))[:, 0]


def phash(images: Iterable) -> np.ndarray:
  """uint64[B]: the perceptual hash of each image (uint8[H, W, 3] arrays or PIL images)."""
  thumbnails = [grey_thumbnail(image) for image in images]
  if not thumbnails:
    return np.zeros((0,), np.uint64)
  return phash_of_thumbnails(np.stack(thumbnails))


def fine_hash(images: Iterable) -> np.ndarray:
  """uint64[B, 4]: the 256-bit DCT hash, `imagehash.phash(image, hash_size=16)` (a 64x64
  thumbnail, its 16x16 lowest frequencies), which confirms near-duplicates."""
  thumbnails = [grey_thumbnail(image, 4 * FINE_HASH_SIZE) for image in images]
  if not thumbnails:
    return np.zeros((0, FINE_WORDS), np.uint64)
  return pack(dct_bits(np.stack(thumbnails), FINE_HASH_SIZE))


def hamming(a, b) -> np.ndarray:
  """Bits that differ between uint64 hashes, broadcast: int[...]."""
  return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))


def fine_hamming(a, b) -> np.ndarray:
  """Bits that differ between 256-bit hashes uint64[..., 4], broadcast: int[...]."""
  return hamming(a, b).sum(axis=-1, dtype=np.int32)


def fingerprint(image: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray, tuple[int, int]]:
  """(pixel digest, 32x32 and 64x64 grey thumbnails, (height, width)) of one uint8[H, W, 3]
  image."""
  image = np.asarray(image)
  grey = Image.fromarray(np.asarray(image, np.uint8)).convert('L')
  return (pixel_digest(image), grey_thumbnail(grey), grey_thumbnail(grey, 4 * FINE_HASH_SIZE),
          image.shape[:2])


@dataclasses.dataclass
class ImageFingerprints:
  """Fingerprints of M images, row by row."""

  digest: np.ndarray  # uint8[M, 32]
  phash: np.ndarray  # uint64[M]
  fine: np.ndarray  # uint64[M, 4], the 256-bit hash
  size: np.ndarray  # int32[M, 2], (height, width)
  kept: np.ndarray  # int64[M], the position of each image among the items given
  thumbnail: np.ndarray  # uint8[M, 64, 64], the grey thumbnail of `fine` (crop_match's)

  def __len__(self):
    return len(self.phash)


def fingerprints(items: Iterable[T], decode: Callable[[T], np.ndarray | None], *,
                 batch_size: int = 256, workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> ImageFingerprints:
  """Digests, hashes and sizes of the images `decode(item)` gives (uint8[H, W, 3]).

  decode may return None for an item to leave it out (a damaged file a build skips).
  Decoding and the per-image work (digest, thumbnail) run in `workers` threads, a batch
  of items at a time, so only a batch of images and the thumbnails are held. progress:
  called with the number of items done, once per batch.
  Returns the M images' fingerprints in the order of `items`.
  """
  digests, hashes, fines, sizes, kept, thumbnails = [], [], [], [], [], []

  def work(item):
    image = decode(item)
    return None if image is None else fingerprint(image)

  items = iter(items)
  position = 0
  while chunk := list(itertools.islice(items, batch_size)):
    done = [(position + k, found) for k, found in
            enumerate(threads.map_in_threads(work, chunk, workers)) if found is not None]
    position += len(chunk)
    if done:
      hashes.append(phash_of_thumbnails(np.stack([found[1] for _, found in done])))
      thumbnails.append(np.stack([found[2] for _, found in done]))
      fines.append(pack(dct_bits(thumbnails[-1], FINE_HASH_SIZE)))
      digests.extend(found[0] for _, found in done)
      sizes.extend(found[3] for _, found in done)
      kept.extend(k for k, _ in done)
    if progress is not None:
      progress(len(chunk))
  return ImageFingerprints(
      digest=(np.frombuffer(b''.join(digests), np.uint8).reshape(-1, DIGEST_BYTES)
              if digests else np.zeros((0, DIGEST_BYTES), np.uint8)),
      phash=np.concatenate(hashes) if hashes else np.zeros((0,), np.uint64),
      fine=np.concatenate(fines) if fines else np.zeros((0, FINE_WORDS), np.uint64),
      size=np.array(sizes, np.int32).reshape(-1, 2),
      kept=np.array(kept, np.int64),
      thumbnail=(np.concatenate(thumbnails) if thumbnails else
                 np.zeros((0, 4 * FINE_HASH_SIZE, 4 * FINE_HASH_SIZE), np.uint8)))
