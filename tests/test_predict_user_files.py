"""`predict` on the files users bring: grayscale, RGBA, 16-bit PNG and TIFF, huge and tiny
images work; unreadable, empty, missing, floating-point and too-large ones fail alone with
a message naming the file, and the rest of the batch completes."""

import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

from skinjax.evaluation import predict as predictor
from skinjax.data import image_files, synthetic

REPO = Path(__file__).resolve().parents[1]
HUGE = 10_000


def tiff_rgb16(pixels: np.ndarray) -> bytes:
  """An uncompressed 16-bit RGB TIFF of uint16[H, W, 3] (PIL reads these but cannot write
  them)."""
  height, width, _ = pixels.shape
  data = pixels.astype('<u2').tobytes()
  entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, 'bits'), (259, 3, 1, 1),
             (262, 3, 1, 2), (273, 4, 1, 'data'), (277, 3, 1, 3), (278, 3, 1, height),
             (279, 4, 1, len(data)), (284, 3, 1, 1)]
  bits_at = 8 + 2 + 12 * len(entries) + 4
  places = {'bits': bits_at, 'data': bits_at + 6}
  directory = struct.pack('<H', len(entries))
  for tag, kind, count, value in entries:
    value = places.get(value, value)
    directory += struct.pack('<HHIHH' if kind == 3 and count == 1 else '<HHII', tag, kind,
                             count, value, *([0] if kind == 3 and count == 1 else []))
  return (b'II*\x00' + struct.pack('<I', 8) + directory + struct.pack('<I', 0) +
          struct.pack('<3H', 16, 16, 16) + data)


def png_rgb16(pixels: np.ndarray) -> bytes:
  """A 16-bit RGB PNG of uint16[H, W, 3] (PIL reads these but cannot write them)."""
  height, width, _ = pixels.shape
  raw = b''.join(b'\x00' + row.astype('>u2').tobytes() for row in pixels)

  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 16, 2,
                                                            0, 0, 0)) +
          chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


@pytest.fixture(scope='module')
def user_files(tmp_path_factory):
  """name -> path: one lesion photo in the modes and formats users bring, plus files
  that cannot be used."""
  folder = tmp_path_factory.mktemp('odd_images')
  appearance = synthetic.APPEARANCES['mel']
  rng = np.random.default_rng(3)
  lesion, _ = synthetic.draw_lesion(rng, 120, 160, appearance,
                                    synthetic.LesionShape.random(rng, appearance))
  gray = np.asarray(Image.fromarray(lesion).convert('L'))
  files = {name: folder / name for name in (
      'lesion.png', 'rgba.png', 'rgb16.tif', 'rgb16.png', 'gray.png', 'gray16.png',
      'gray16.tif', 'tiny.png', 'huge.jpg', 'huge_gray.png', 'float.tif', 'unreadable.jpg',
      'empty.jpg', 'missing.jpg')}
  Image.fromarray(lesion).save(files['lesion.png'])
  alpha = np.linspace(0, 255, 160, dtype=np.uint8)[None, :].repeat(120, axis=0)
  Image.fromarray(np.dstack([lesion, alpha])).save(files['rgba.png'])
  # 16-bit copies of the same pixels: v * 257 reads back as exactly v.
  files['rgb16.tif'].write_bytes(tiff_rgb16(lesion.astype(np.uint16) * 257))
  files['rgb16.png'].write_bytes(png_rgb16(lesion.astype(np.uint16) * 257))
  Image.fromarray(gray).save(files['gray.png'])
  Image.fromarray(gray.astype(np.uint16) * 257).save(files['gray16.png'])
  Image.fromarray(gray.astype(np.uint16) * 257).save(files['gray16.tif'])
  Image.fromarray(lesion).resize((8, 8), Image.BILINEAR).save(files['tiny.png'])
  huge = Image.new('RGB', (HUGE, HUGE), (190, 150, 130))
  huge.paste(Image.fromarray(lesion).resize((4000, 3000)), (3000, 3500))
  huge.save(files['huge.jpg'], quality=80)
  Image.new('L', (HUGE, HUGE), 128).save(files['huge_gray.png'], compress_level=1)
  Image.fromarray(gray.astype(np.float32) / 255).save(files['float.tif'])
  files['unreadable.jpg'].write_text('not an image')
  files['empty.jpg'].write_bytes(b'')
  # A second 'tiny' from another folder: its results must not overwrite the first's.
  files['other/tiny.jpg'] = folder / 'other' / 'tiny.jpg'
  files['other/tiny.jpg'].parent.mkdir()
  Image.fromarray(lesion).resize((8, 8)).save(files['other/tiny.jpg'])
  return files


WORKS = ['lesion.png', 'rgba.png', 'rgb16.tif', 'rgb16.png', 'gray.png', 'gray16.png',
         'gray16.tif', 'tiny.png', 'huge.jpg', 'other/tiny.jpg']
FAILS = {
    'huge_gray.png': r'huge_gray\.png: 10000x10000 PNG image has 100,000,000 pixels; '
                     r'expected at most 89,478,485',
    'float.tif': r'float\.tif: 32-bit floating-point image; expected 8- or 16-bit',
    'unreadable.jpg': r'unreadable\.jpg: not a readable image \(UnidentifiedImageError',
    'empty.jpg': r'empty\.jpg: not a readable image \(empty file, 0 bytes\)',
    'missing.jpg': r'missing\.jpg: file not found',
}


def predict(*args):
  return subprocess.run([sys.executable, str(REPO / 'launch' / 'predict.py'), *map(str, args)],
                        capture_output=True, text=True, timeout=600)


def test_each_odd_file_works_or_fails_alone_and_the_batch_completes(classifier_run,
                                                                     user_files, tmp_path):
  names = WORKS + sorted(FAILS)
  result = predict(f'--workdir={classifier_run[0]}', f'--output_dir={tmp_path}',
                   *[user_files[name] for name in names])
  assert result.returncode == 0, result.stderr[-3000:]
  assert '(10 of 15 images predicted)' in result.stdout
  outputs = {name: json.loads((tmp_path / f'{Path(name).stem}.json').read_text())
             for name in names if name != 'other/tiny.jpg'}
  outputs['other/tiny.jpg'] = json.loads((tmp_path / 'tiny_2.json').read_text())
  for name in WORKS:
    assert 'error' not in outputs[name], (name, outputs[name])
    assert sum(outputs[name]['probabilities'].values()) == pytest.approx(1.0, abs=1e-5)
  for name, message in FAILS.items():
    assert outputs[name]['image'] == str(user_files[name])
    assert 'probabilities' not in outputs[name]
    assert re.search(message, outputs[name]['error']), (name, outputs[name]['error'])
  # Same pixels, same answer: 16-bit files are scaled (not clipped) and alpha is dropped.
  for name in ('rgba.png', 'rgb16.tif', 'rgb16.png'):
    assert outputs[name]['probabilities'] == pytest.approx(
        outputs['lesion.png']['probabilities'], abs=1e-6), name
  for name in ('gray16.png', 'gray16.tif'):
    assert outputs[name]['probabilities'] == pytest.approx(
        outputs['gray.png']['probabilities'], abs=1e-6), name
  assert outputs['huge.jpg']['analysed_size'] == [predictor.MAX_SIDE, predictor.MAX_SIDE]
  assert outputs['tiny.png']['analysed_size'] == [8, 8]


def test_a_segmenter_gives_masks_for_tiny_and_huge_images(segmenter_run, user_files, tmp_path):
  result = predict(f'--workdir={segmenter_run[0]}', f'--output_dir={tmp_path}',
                   user_files['tiny.png'], user_files['huge.jpg'])
  assert result.returncode == 0, result.stderr[-3000:]
  for name, side in (('tiny', 8), ('huge', predictor.MAX_SIDE)):
    output = json.loads((tmp_path / f'{name}.json').read_text())
    assert np.asarray(Image.open(output['mask'])).shape == (side, side)
    assert Path(output['overlay']).exists()


def test_a_batch_of_only_bad_files_exits_non_zero(classifier_run, user_files, tmp_path):
  result = predict(f'--workdir={classifier_run[0]}', f'--output_dir={tmp_path}',
                   user_files['empty.jpg'], user_files['missing.jpg'])
  assert result.returncode == 1 and '(0 of 2 images predicted)' in result.stdout


def test_16_bit_pixels_are_scaled_to_8_bits_not_clipped(user_files):
  gray = np.asarray(Image.open(user_files['gray.png']))
  for name in ('gray16.png', 'gray16.tif'):
    assert np.array_equal(predictor.read_image(user_files[name]), np.dstack([gray] * 3))


def test_a_huge_jpeg_is_decoded_at_reduced_scale(user_files, monkeypatch):
  # With a limit below the JPEG's 100 M pixels but above 2500x2500, only a reduced-scale
  # decode (1/4: 2500x2500) can succeed.
  monkeypatch.setattr(image_files, 'MAX_PIXELS', 2500 * 2500)
  image = predictor.read_image(user_files['huge.jpg'])
  assert image.shape == (predictor.MAX_SIDE, predictor.MAX_SIDE, 3)
  with pytest.raises(image_files.DatasetFileError, match='expected at most 6,250,000'):
    image_files.read_rgb(user_files['huge.jpg'])  # at full scale
