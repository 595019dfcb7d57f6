"""A dataset audit: copies, label conflicts, split leaks and overlap between datasets.

Input: datasets read from their public layout (a manual directory, every file as the
distribution has it) or from a prepared TFDS build (its examples, by TFDS split). Every
image is fingerprinted (skinjax.data.image_hash); pairs are exact duplicates (equal decoded
pixels) or near-duplicates (perceptual hashes within image_hash.NEAR_DUPLICATE_BITS, or
one image a crop of the other: skinjax.data.crop_match); groups are connected components
of the pairs.

Findings, per dataset (over its own pairs): groups of copies, label conflicts (a group
under two diagnoses, as the source names them), split leaks (a group in two splits: the
distribution's Train/Test, or a build's train/validation/test), groups that cross the
source's own grouping (HAM10000's lesion_id). Across datasets: the images each holds of
the other, and which diagnosis of one meets which of the other. `write_report` writes
audit.json, audit.md and PNG contact sheets.
"""

import collections
import dataclasses
import inspect
import itertools
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds

from skinjax.data import builders, crop_match, duplicates, image_hash, split_fingerprints
from skinjax.data.image_files import DatasetFileError
from skinjax.data.layout import LayoutImage, pixels_or_none

# The diagnosis feature each builder keeps as its source gives it ('label' may be a
# scenario's merged class).
DIAGNOSIS_FEATURE = {'ham10000': 'label', 'ph2': 'label', 'isic9': 'diagnosis'}
GROUP_FEATURE = {'ham10000': 'lesion_id'}


@dataclasses.dataclass
class AuditedSet:
  """One dataset's images as audited, with their fingerprints (row i: images[i])."""

  name: str
  origin: str  # where the images were read
  images: list[LayoutImage]
  fingerprints: image_hash.ImageFingerprints
  skipped: list[str] = dataclasses.field(default_factory=list)  # damaged files left out


def layout_images(name: str, manual_dir, damaged) -> list[LayoutImage]:
  """The images of dataset `name`'s public layout, as its builder lists them."""
  module = inspect.getmodule(builders.builder_class(name))
  return module.layout_images(manual_dir, damaged)


def from_layout(name: str, manual_dir, *, skip_corrupt: bool = False,
                progress: Callable[[int], None] | None = None) -> AuditedSet:
  """Every image file of `manual_dir`, read as dataset `name`'s builder reads it.

  A damaged file raises DatasetFileError naming it; with skip_corrupt it is left out and
  listed in `skipped`.
  """
  if not Path(manual_dir).is_dir():
    raise DatasetFileError(f'{manual_dir}: not a folder; expected the {name} download')
  skipped = []

  def damaged(error):
    if not skip_corrupt:
      raise error
    skipped.append(str(error))

  images = layout_images(name, manual_dir, damaged)
  found = image_hash.fingerprints(images, lambda image: pixels_or_none(image, damaged),
                                  progress=progress)
  return AuditedSet(name, f'layout {os.fspath(manual_dir)}',
                    [images[k] for k in found.kept], found, skipped)


def from_prepared(builder, *, progress: Callable[[int], None] | None = None) -> AuditedSet:
  """The examples of every split of a prepared builder (fingerprints from the split cache,
  skinjax.data.split_fingerprints); source_split is the TFDS split."""
  name = builder.name
  label_feature = DIAGNOSIS_FEATURE.get(name, 'label')
  names = builder.info.features[label_feature].names
  group_feature = GROUP_FEATURE.get(name)
  images, parts = [], []
  for split in sorted(builder.info.splits):
    source = builder.as_data_source(split=split,
                                    decoders={'image': tfds.decode.SkipDecoding()})
    parts.append(split_fingerprints.load(builder, split, progress=progress))
    for i in range(len(source)):
      example = source[i]
      paths = [p.decode() if isinstance(p, bytes) else str(p)
               for p in example.get('source_paths', [])]
      image_id = _text(example['image_id'])
      images.append(LayoutImage(
          key=f'{split}/{paths[0] if paths else image_id}', image_id=image_id,
          label=names[example[label_feature]], source_split=split,
          group=_text(example[group_feature]) if group_feature else '',
          read=lambda source=source, i=i, split=split: (
              source[i]['image'], f'{builder.info.full_name}[{split}][{i}]')))
  fingerprints = split_fingerprints.Fingerprints.concatenate(parts)
  found = image_hash.ImageFingerprints(fingerprints.digest, fingerprints.phash,
                                       fingerprints.fine, fingerprints.size,
                                       np.arange(len(fingerprints)), fingerprints.thumbnail)
  return AuditedSet(name, f'prepared {builder.data_path}', images, found)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


@dataclasses.dataclass
class Audit:
  sets: list[AuditedSet]
  images: list[LayoutImage]  # all sets' images, concatenated
  dataset: np.ndarray  # int[N], the set of each image
  pairs: duplicates.Pairs  # over all images, left < right
  max_distance: int
  confirm_distance: int

  def set_slice(self, index: int) -> slice:
    start = sum(len(s.images) for s in self.sets[:index])
    return slice(start, start + len(self.sets[index].images))

  def within(self, index: int) -> duplicates.Pairs:
    """Pairs of two images of set `index`."""
    return self.pairs.select((self.dataset[self.pairs.left] == index) &
                             (self.dataset[self.pairs.right] == index))

  def across(self, first: int, second: int) -> duplicates.Pairs:
    """Pairs of an image of set `first` (left) and one of set `second` (right)."""
    a, b = self.dataset[self.pairs.left], self.dataset[self.pairs.right]
    forward = self.pairs.select((a == first) & (b == second))
    backward = self.pairs.select((a == second) & (b == first)).swapped()
    return duplicates.Pairs.concatenate([forward, backward])

  def groups(self, pairs: duplicates.Pairs) -> list[np.ndarray]:
    """Groups of two or more images joined by `pairs` (global image indices), largest
    first, then by first member."""
    roots = duplicates.components(len(self.images), pairs.left, pairs.right)
    members = collections.defaultdict(list)
    for node in np.unique(np.concatenate([pairs.left, pairs.right])):
      members[roots[node]].append(node)
    return sorted((np.array(m) for m in members.values()), key=lambda m: (-len(m), m[0]))


def audit(sets: list[AuditedSet], *, max_distance: int | None = None,
          confirm_distance: int | None = None) -> Audit:
  """Pairs over all images of all sets (within and across); thresholds as in
  duplicates.find_pairs."""
  max_distance = image_hash.NEAR_DUPLICATE_BITS if max_distance is None else max_distance
  confirm_distance = (image_hash.CONFIRM_BITS if confirm_distance is None
                      else confirm_distance)
  images = [image for s in sets for image in s.images]
  dataset = np.concatenate([np.full(len(s.images), k) for k, s in enumerate(sets)]) \
      if sets else np.zeros((0,), int)
  everything = split_fingerprints.Fingerprints(
      np.concatenate([s.fingerprints.digest for s in sets]),
      np.concatenate([s.fingerprints.phash for s in sets]),
      np.concatenate([s.fingerprints.fine for s in sets]),
      np.concatenate([s.fingerprints.size for s in sets]),
      np.array([image.image_id for image in images], dtype=str),
      np.concatenate([s.fingerprints.thumbnail for s in sets]))
  pairs = duplicates.find_pairs(everything, max_distance=max_distance,
                                confirm_distance=confirm_distance)
  return Audit(sets, images, dataset, pairs, max_distance, confirm_distance)


def _member(audit: Audit, node: int) -> dict:
  image = audit.images[node]
  return {'dataset': audit.sets[audit.dataset[node]].name, 'key': image.key,
          'image_id': image.image_id, 'label': image.label, 'split': image.source_split,
          'group': image.group}


def _pair_key(values) -> str:
  return ' / '.join(sorted(values))


def set_findings(audit: Audit, index: int) -> dict:
  """Counts and groups of one dataset's own copies."""
  audited = audit.sets[index]
  pairs = audit.within(index)
  exact = pairs.select(pairs.exact)
  groups = audit.groups(pairs)
  exact_groups = audit.groups(exact)
  conflicts, leaks, crossing = collections.Counter(), collections.Counter(), 0
  rows = []
  for members in groups:
    labels = sorted({audit.images[n].label for n in members})
    source_splits = sorted({audit.images[n].source_split for n in members})
    own_groups = sorted({audit.images[n].group for n in members} - {''})
    member_set = set(members.tolist())
    in_group = pairs.select(np.isin(pairs.left, members))
    kind = 'exact' if in_group.exact.all() else ('near' if not in_group.exact.any()
                                                  else 'exact+near')
    if len(labels) > 1:
      conflicts[_pair_key(labels)] += 1
    if len(source_splits) > 1:
      leaks[_pair_key(source_splits)] += 1
    if len(own_groups) > 1:
      crossing += 1
    rows.append({'size': len(members), 'kind': kind, 'labels': labels,
                 'splits': source_splits, 'source_groups': own_groups,
                 'members': [_member(audit, n) for n in sorted(member_set)]})
  name_differs = sum(audit.images[i].image_id != audit.images[j].image_id
                     for i, j in zip(pairs.left, pairs.right))
  return {
      'dataset': audited.name, 'origin': audited.origin, 'images': len(audited.images),
      'skipped': len(audited.skipped), 'skipped_files': audited.skipped,
      'pairs': len(pairs), 'exact_pairs': int(pairs.exact.sum()),
      'near_pairs': int((~pairs.exact).sum()),
      'cropped_pairs': int((pairs.cropped != 0).sum()),
      'pairs_with_different_image_ids': int(name_differs),
      'exact_groups': len(exact_groups),
      'images_in_exact_groups': int(sum(len(g) for g in exact_groups)),
      'redundant_copies': int(sum(len(g) - 1 for g in exact_groups)),
      'groups': len(groups), 'images_in_groups': int(sum(len(g) for g in groups)),
      'near_groups': sum(row['kind'] != 'exact' for row in rows),
      'label_conflict_groups': sum(conflicts.values()), 'label_conflicts': dict(conflicts),
      'split_leak_groups': sum(leaks.values()), 'split_leaks': dict(leaks),
      'groups_crossing_source_groups': crossing,
      'group_rows': rows,
  }


def across_findings(audit: Audit, first: int, second: int) -> dict:
  """What two datasets share: matched images and which diagnosis meets which."""
  pairs = audit.across(first, second)
  a_name, b_name = audit.sets[first].name, audit.sets[second].name
  diagnoses = collections.defaultdict(collections.Counter)
  by_split = collections.Counter()
  same_id = 0
  for i, j in zip(pairs.left, pairs.right):
    diagnoses[audit.images[i].label][audit.images[j].label] += 1
    same_id += audit.images[i].image_id == audit.images[j].image_id
  matched_a = np.unique(pairs.left)
  for node in matched_a:
    by_split[audit.images[node].source_split] += 1
  # Images of `first` per its label, and how many of them `second` holds.
  a_labels = collections.Counter(image.label for image in audit.sets[first].images)
  found_labels = collections.Counter(audit.images[n].label for n in matched_a)
  rows = [{'first': _member(audit, i), 'second': _member(audit, j), 'distance': int(d),
           'fine_distance': int(f), 'exact': bool(e),
           'cropped': {0: '', duplicates.LEFT_IS_CROP: 'first',
                       duplicates.RIGHT_IS_CROP: 'second'}[int(c)],
           'crop': [round(float(x), 4) for x in window], 'crop_distance': int(w)}
          for i, j, d, f, e, c, window, w in zip(
              pairs.left, pairs.right, pairs.distance, pairs.fine_distance, pairs.exact,
              pairs.cropped, pairs.crop, pairs.crop_distance)]
  whole = pairs.distance[pairs.cropped == 0]
  return {
      'first': a_name, 'second': b_name, 'pairs': len(pairs),
      'exact_pairs': int(pairs.exact.sum()), 'near_pairs': int((~pairs.exact).sum()),
      'cropped_pairs': int((pairs.cropped != 0).sum()),
      'pairs_with_the_same_image_id': int(same_id),
      'distance_histogram': np.bincount(whole, minlength=audit.max_distance + 1
                                        ).tolist() if len(whole) else [],
      f'{a_name}_images_found': len(matched_a),
      f'{b_name}_images_found': len(np.unique(pairs.right)),
      f'{a_name}_images_found_by_split': dict(sorted(by_split.items())),
      f'{a_name}_images_found_by_label': {label: [found_labels[label], total]
                                          for label, total in sorted(a_labels.items())},
      'diagnoses': {label: dict(sorted(counts.items()))
                    for label, counts in sorted(diagnoses.items())},
      'pair_rows': rows,
  }


def findings(audit: Audit) -> dict:
  """Everything the report says, JSON-ready."""
  return {
      'near_duplicate_bits': audit.max_distance,
      'confirm_bits': audit.confirm_distance,
      'rule': ('exact: equal decoded pixels; near: 64-bit perceptual hashes (imagehash.phash) '
               f'differing in at most {audit.max_distance} bits and 256-bit ones '
               f'(hash_size=16) in at most {audit.confirm_distance}, or one image a crop of '
               f'the other (up to {crop_match.MAX_CROP:.1%} of each side; 256-bit hashes of '
               f'the aligned window within {crop_match.CONFIRM_BITS} bits); groups: '
               'connected components of the pairs'),
      'datasets': [set_findings(audit, k) for k in range(len(audit.sets))],
      'across': [across_findings(audit, a, b)
                 for a, b in itertools.combinations(range(len(audit.sets)), 2)],
  }


def _table(header, rows) -> list[str]:
  lines = ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join('---' for _ in header) + ' |']
  lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
  return lines


def markdown(report: dict, sheets: dict[str, str]) -> str:
  """audit.md: the counts and tables of `findings`."""
  lines = ['# Dataset audit', '', report['rule'] + '.', '']
  for found in report['datasets']:
    lines += [f'## {found["dataset"]}', '', f'Read from {found["origin"]}.', '']
    lines += _table(['what', 'count'], [
        ('images', found['images']),
        ('damaged files left out', found['skipped']),
        ('duplicate pairs (exact / near)', f'{found["exact_pairs"]} / {found["near_pairs"]}'),
        ('near pairs matched only as a crop', found['cropped_pairs']),
        ('pairs whose image ids differ', found['pairs_with_different_image_ids']),
        ('exact-copy groups (images in them)',
         f'{found["exact_groups"]} ({found["images_in_exact_groups"]})'),
        ('redundant exact copies', found['redundant_copies']),
        ('duplicate groups, exact or near (images in them)',
         f'{found["groups"]} ({found["images_in_groups"]})'),
        ('groups joined by a near-duplicate pair', found['near_groups']),
        ('label-conflict groups', found['label_conflict_groups']),
        ('split-leak groups', found['split_leak_groups']),
        ('groups crossing the source\'s own groups (lesion_id)',
         found['groups_crossing_source_groups']),
    ])
    if found['label_conflicts']:
      lines += ['', 'Label conflicts by pair of diagnoses:', '']
      lines += _table(['diagnoses', 'groups'], sorted(found['label_conflicts'].items()))
    if found['split_leaks']:
      lines += ['', 'Split leaks by pair of splits:', '']
      lines += _table(['splits', 'groups'], sorted(found['split_leaks'].items()))
    lines.append('')
  for found in report['across']:
    a, b = found['first'], found['second']
    lines += [f'## {a} x {b}', '']
    lines += _table(['what', 'count'], [
        ('matched pairs (exact / near)',
         f'{found["pairs"]} ({found["exact_pairs"]} / {found["near_pairs"]})'),
        ('near pairs matched only as a crop', found['cropped_pairs']),
        ('pairs with the same image id', found['pairs_with_the_same_image_id']),
        (f'{a} images found in {b}', found[f'{a}_images_found']),
        (f'{b} images found in {a}', found[f'{b}_images_found']),
        ('64-bit hash distance of the pairs matched whole (0, 1, 2, ... bits)',
         ', '.join(map(str, found['distance_histogram']))),
    ])
    lines += ['', f'{a} images found in {b}, by {a} split and by {a} diagnosis:', '']
    lines += _table(['split', 'images'], found[f'{a}_images_found_by_split'].items())
    lines += ['']
    lines += _table([f'{a} diagnosis', f'found in {b}', 'of'],
                    [(label, n, total) for label, (n, total)
                     in found[f'{a}_images_found_by_label'].items()])
    b_labels = sorted({label for row in found['diagnoses'].values() for label in row})
    lines += ['', f'Which diagnosis of {a} (rows) meets which of {b} (columns), in pairs:', '']
    lines += _table([f'{a} \\ {b}'] + b_labels,
                    [[label] + [row.get(other, '') for other in b_labels]
                     for label, row in found['diagnoses'].items()])
    lines.append('')
  if sheets:
    lines += ['## Contact sheets', '']
    lines += [f'- [{title}]({path})' for title, path in sheets.items()]
    lines.append('')
  return '\n'.join(lines)


def write_report(audit: Audit, output_dir, *, sheet_rows: int = 12) -> dict:
  """Writes audit.json, audit.md and contact sheets (PNG) into output_dir; returns the
  findings."""
  from skinjax.data import contact_sheet  # matplotlib's font, only when writing sheets
  output_dir = Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  report = findings(audit)
  sheets = {}
  for found in report['datasets']:
    name = found['dataset']
    for title, rows in (
        ('label conflicts', [r for r in found['group_rows'] if len(r['labels']) > 1]),
        ('split leaks', [r for r in found['group_rows'] if len(r['splits']) > 1]),
        ('near-duplicate groups', [r for r in found['group_rows'] if r['kind'] != 'exact']),
        ('groups crossing lesions', [r for r in found['group_rows']
                                     if len(r['source_groups']) > 1])):
      if rows:
        file = f'{name}_{title.replace(" ", "_")}.png'
        contact_sheet.write(audit, [r['members'] for r in rows[:sheet_rows]],
                            output_dir / file, title=f'{name}: {title} '
                            f'({min(len(rows), sheet_rows)} of {len(rows)})')
        sheets[f'{name}: {title}'] = file
  for found in report['across']:
    a, b = found['first'], found['second']
    rows = found['pair_rows']
    for title, chosen in (
        ('matches', _spread(rows, sheet_rows)),
        ('matches with other image ids',
         [r for r in rows if r['first']['image_id'] != r['second']['image_id']][:sheet_rows])):
      if chosen:
        file = f'{a}_x_{b}_{title.replace(" ", "_")}.png'
        contact_sheet.write(audit, [[r['first'], r['second']] for r in chosen],
                            output_dir / file, title=f'{a} x {b}: {title}',
                            notes=[f'{r["distance"]} / 64 and {r["fine_distance"]} / 256 bits '
                                   'apart' + (' (equal pixels)' if r['exact'] else '') +
                                   (f'; the {r["cropped"]} a crop of the other, '
                                    f'{r["crop_distance"]} / 256 bits from its window'
                                    if r['cropped'] else '')
                                   for r in chosen])
        sheets[f'{a} x {b}: {title}'] = file
  (output_dir / 'audit.json').write_text(json.dumps(report, indent=1) + '\n')
  (output_dir / 'audit.md').write_text(markdown(report, sheets))
  return report


def _spread(rows: list, count: int) -> list:
  """`count` rows spread over the list (largest distances included), not just its head."""
  if len(rows) <= count:
    return rows
  by_distance = sorted(rows, key=lambda r: r['distance'])
  return [by_distance[round(k * (len(rows) - 1) / (count - 1))] for k in range(count)]
