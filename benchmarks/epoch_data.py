"""What both sides of the epoch row train on: paper 1's run spec, the HAM10000 download (or
an evenly spaced part of it) built in a data folder of the benchmark's own, and the arrays
skinjax's data code makes of them.

The Keras worker reads the arrays the skinjax launcher trains on: the same build, the same
lesion-grouped split, the same balanced train indices. Only the standard library at the
top: throughput.py imports this where neither JAX nor TensorFlow is loaded.
"""

import csv
import hashlib
import os
import shutil
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CONFIG = os.path.join(REPO, 'launch', 'configs', 'deepconvnet_ham10000.py')
METADATA = 'HAM10000_metadata.csv'
IMAGE_PARTS = ('HAM10000_images_part_1', 'HAM10000_images_part_2')


def missing(manual_dir: str) -> str | None:
  """Why `manual_dir` is not a HAM10000 download to time, or None when it is one."""
  if not os.path.isdir(manual_dir):
    return f'no HAM10000 download at {manual_dir}'
  if not os.path.isfile(os.path.join(manual_dir, METADATA)):
    return f'{manual_dir}: no {METADATA}, not a HAM10000 download'
  return None


def sources(manual_dir: str, max_images: int = 0, cache_dir: str | None = None):
  """(manual_dir, data_dir) for both workers.

  The build lives in `<cache_dir>/<key>/tfds` (default cache_dir
  ~/.cache/skinjax/bench_data), kept between runs so that the build and the decode happen
  once; the key names the download (its path and its metadata file's size and time) and
  max_images, so another download never meets this one's build. max_images > 0: the
  download is `<cache_dir>/<key>/download`, that many rows spread evenly over the metadata
  (every class kept), the images linked, not copied.
  """
  manual_dir = os.path.realpath(manual_dir)
  stat = os.stat(os.path.join(manual_dir, METADATA))
  key = hashlib.sha256(f'{manual_dir}:{stat.st_size}:{stat.st_mtime_ns}:{max_images}'
                       .encode()).hexdigest()[:12]
  root = os.path.join(cache_dir or os.path.join(
      os.path.expanduser('~'), '.cache', 'skinjax', 'bench_data'), key)
  if max_images > 0:
    manual_dir = _part_of(manual_dir, max_images, os.path.join(root, 'download'))
  return manual_dir, os.path.join(root, 'tfds')


def _part_of(manual_dir: str, max_images: int, folder: str) -> str:
  """`folder` as a HAM10000 download of `max_images` evenly spaced metadata rows (the
  metadata lists the classes one after another, so its first rows would be one class)."""
  if os.path.isfile(os.path.join(folder, METADATA)):
    return folder
  with open(os.path.join(manual_dir, METADATA), newline='') as f:
    reader = csv.DictReader(f)
    fields, rows = reader.fieldnames, list(reader)
  stride = max(1, len(rows) // max_images)
  rows = rows[::stride][:max_images]
  partial = f'{folder}.{os.getpid()}.partial'
  shutil.rmtree(partial, ignore_errors=True)
  try:
    _link_part(manual_dir, rows, fields, partial)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)  # a half-linked part is never left behind
    raise
  os.makedirs(os.path.dirname(folder), exist_ok=True)
  try:
    os.rename(partial, folder)
  except OSError:  # another run made it first
    shutil.rmtree(partial, ignore_errors=True)
  return folder


def _link_part(manual_dir: str, rows: list[dict], fields, partial: str):
  """`partial` as a download of `rows`: their images linked, their metadata written."""
  for part in IMAGE_PARTS:
    os.makedirs(os.path.join(partial, part))
  for number, row in enumerate(rows):
    name = f'{row["image_id"]}.jpg'
    found = [p for p in IMAGE_PARTS if os.path.isfile(os.path.join(manual_dir, p, name))]
    if not found:
      raise FileNotFoundError(f'{manual_dir}: {METADATA} lists {row["image_id"]}, but no '
                              f'{name} is in {" or ".join(IMAGE_PARTS)}/')
    os.symlink(os.path.join(manual_dir, found[0], name),
               os.path.join(partial, IMAGE_PARTS[number % 2], name))
  with open(os.path.join(partial, METADATA), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)


def run_spec(epochs: int):
  """Paper 1's RunSpec (launch/configs/deepconvnet_ham10000.py), `epochs` epochs long."""
  import importlib.util
  from skinjax.train.spec import RunSpec
  found = importlib.util.spec_from_file_location('deepconvnet_ham10000_config', CONFIG)
  module = importlib.util.module_from_spec(found)
  found.loader.exec_module(module)
  config = module.get_config()
  config.phases[0].epochs = epochs
  return RunSpec.from_config(config)


def launcher_overrides(epochs: int) -> list[str]:
  """The launcher's flags for the same spec as run_spec(epochs)."""
  return [f'--config={CONFIG}', f'--config.phases[0].epochs={epochs}']


def prepare(spec, *, manual_dir: str, data_dir: str):
  """(skinjax.data.experiment_data.ExperimentData, seconds): the dataset built in data_dir
  if it is not, every split decoded into the array cache if it is not (this is the
  decode the epoch row leaves out of its times), then loaded from that cache."""
  from skinjax.data import experiment_data
  start = time.perf_counter()
  data = experiment_data.prepare(spec, data_dir=data_dir, manual_dir=manual_dir)
  return data, time.perf_counter() - start
