r"""Audit datasets for copies, label conflicts, split leaks and overlap between them.

  python launch/audit.py --datasets=isic9,ham10000 \
      --manual_dir=isic9=../shared/data/ISIC9 --manual_dir=ham10000=../shared/data/HAM10000 \
      --output_dir=runs/audit

A dataset with a --manual_dir is read from its download, every file as distributed; one
without is read from its build in --data_dir (`name/config` picks a config), which the
audit only reads. Writes audit.json, audit.md and PNG contact sheets into --output_dir.
"""

import sys
import time

from absl import app, flags
import tqdm

from skinjax.data import audit, builders
from skinjax.data.image_files import DatasetFileError

FLAGS = flags.FLAGS
flags.DEFINE_list('datasets', None, 'Builder names, optionally name/config: '
                  f'{", ".join(builders.DATASET_NAMES)}.')
flags.DEFINE_multi_string('manual_dir', [], 'NAME=PATH: the download of dataset NAME, in '
                          'its public layout (PATH alone when one dataset is audited).')
flags.DEFINE_string('data_dir', None, 'TFDS data directory of the datasets given without '
                    '--manual_dir (default: TFDS\'s).')
flags.DEFINE_string('output_dir', None, 'Where audit.json, audit.md and the sheets go.')
flags.DEFINE_bool('skip_corrupt', False, 'Leave out (and count) damaged image files instead '
                  'of stopping at the first.')
flags.DEFINE_integer('max_distance', None, 'Near-duplicate threshold in perceptual-hash '
                     'bits (default: skinjax.data.image_hash.NEAR_DUPLICATE_BITS).')
flags.DEFINE_integer('sheet_rows', 12, 'Groups drawn per contact sheet.')
flags.mark_flags_as_required(['datasets', 'output_dir'])


def fail(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


class Progress:
  """A tqdm bar opened at its first update, so that a mistake found before any image is
  read leaves one line on stderr, not a bar."""

  def __init__(self, description: str):
    self.description, self.bar = description, None

  def update(self, count: int):
    if self.bar is None:
      self.bar = tqdm.tqdm(desc=self.description, unit=' images')
    self.bar.update(count)

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    if self.bar is not None:
      self.bar.close()


def manual_dirs(names: list[str]) -> dict[str, str]:
  """--manual_dir entries by dataset name."""
  found = {}
  for entry in FLAGS.manual_dir:
    name, separator, path = entry.partition('=')
    if not separator:
      if len(names) != 1:
        fail(f'--manual_dir={entry}: with several --datasets, write NAME=PATH')
      name, path = names[0], entry
    if name not in names:
      fail(f'--manual_dir={entry}: {name!r} is not among --datasets ({", ".join(names)})')
    found[name] = path
  return found


def read_set(name: str, config: str | None, manual_dir: str | None, bar) -> audit.AuditedSet:
  if manual_dir is not None:
    return audit.from_layout(name, manual_dir, skip_corrupt=FLAGS.skip_corrupt,
                             progress=bar.update)
  import tensorflow_datasets as tfds
  data_dir = FLAGS.data_dir or tfds.core.constants.DATA_DIR
  builder = builders.builder_class(name)(data_dir=data_dir, config=config,
                                         file_format='array_record')
  if not builder.is_prepared():
    fail(f'--manual_dir: dataset {builder.info.full_name} is not built in {data_dir}; give '
         f'--manual_dir={name}=PATH (the download) or the --data_dir where it is built')
  return audit.from_prepared(builder, progress=bar.update)


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}')
  specs = [entry.partition('/') for entry in FLAGS.datasets]
  names = [name for name, _, _ in specs]
  for name in names:
    if name not in builders.DATASET_NAMES:
      fail(f'--datasets: unknown dataset {name!r}; known: {", ".join(builders.DATASET_NAMES)}')
  if len(set(names)) != len(names):
    fail(f'--datasets: a dataset is named twice ({",".join(FLAGS.datasets)})')
  given = manual_dirs(names)
  start = time.perf_counter()
  sets = []
  try:
    for name, _, config in specs:
      with Progress(f'fingerprinting {name}') as bar:
        sets.append(read_set(name, config or None, given.get(name), bar))
    result = audit.audit(sets, max_distance=FLAGS.max_distance)
    report = audit.write_report(result, FLAGS.output_dir, sheet_rows=FLAGS.sheet_rows)
  except (DatasetFileError, ValueError) as error:
    fail(str(error))
  seconds = time.perf_counter() - start
  for found in report['datasets']:
    print(f'{found["dataset"]}: {found["images"]} images, {found["exact_groups"]} exact-copy '
          f'groups, {found["groups"]} duplicate groups, {found["label_conflict_groups"]} '
          f'label conflicts, {found["split_leak_groups"]} split leaks')
  for found in report['across']:
    a, b = found['first'], found['second']
    print(f'{a} x {b}: {found[f"{a}_images_found"]} {a} images found in {b}')
  print(f'audit written to {FLAGS.output_dir} in {seconds:.1f} s')


if __name__ == '__main__':
  app.run(main)
