"""Deterministic, stratified, optionally grouped splits of a dataset's examples.

Grouping keeps every image of one lesion in one split (HAM10000 holds up to six images
of a lesion; splitting images instead leaks lesions between train and test). Units (groups,
or single examples) are stratified by label: each split gets its fraction of every class,
rounded so that the split sizes also hit their fractions of the whole as nearly as whole
units allow. The result depends only on the labels, group names and seed, not on the
order examples are listed in.
"""

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from skinjax.data import duplicates


def _largest_remainder(total: int, fractions: Sequence[float]) -> np.ndarray:
  ideal = total * np.asarray(fractions, np.float64)
  counts = np.floor(ideal).astype(int)
  order = np.argsort(-(ideal - counts), kind='stable')
  counts[order[:total - counts.sum()]] += 1
  return counts


def _allocate(class_sizes: Sequence[int], fractions: Sequence[float]) -> np.ndarray:
  """int[classes, splits]: per-class split sizes whose rows sum to the class sizes and whose
  columns sum to the largest-remainder rounding of the whole."""
  class_sizes = np.asarray(class_sizes)
  ideal = class_sizes[:, None] * np.asarray(fractions, np.float64)[None]
  counts = np.floor(ideal).astype(int)
  targets = _largest_remainder(int(class_sizes.sum()), fractions)
  remainders = ideal - counts
  # Hand out the leftover units by largest remainder, keeping within each split's target.
  for flat in np.argsort(-remainders, axis=None, kind='stable'):
    c, s = np.unravel_index(flat, counts.shape)
    if counts[c].sum() < class_sizes[c] and counts[:, s].sum() < targets[s]:
      counts[c, s] += 1
  # Rows that could not finish within the targets (rare) take their split by remainder.
  for c in np.flatnonzero(counts.sum(axis=1) < class_sizes):
    for s in np.argsort(-remainders[c], kind='stable'):
      if counts[c].sum() == class_sizes[c]:
        break
      counts[c, s] += 1
  return counts


def stratified_split(labels: Sequence, fractions: Mapping[str, float], *, seed: int = 0,
                     groups: Sequence[str] | None = None) -> dict[str, np.ndarray]:
  """Assigns every example to one split.

  Args:
    labels: the class of each example (any hashable values).
    fractions: split name -> fraction; fractions must sum to 1.
    seed: seeds the shuffle within each class.
    groups: optional group of each example (e.g. HAM10000's lesion_id); a group's
      examples always share a split, and fractions count groups. A group whose examples
      disagree on the label is stratified by its most common label.
  Returns:
    split name -> sorted int64 indices of its examples.
  """
  if abs(sum(fractions.values()) - 1.0) > 1e-9:
    raise ValueError(f'split fractions must sum to 1, got {dict(fractions)}')
  labels = list(labels)
  groups = [str(i) for i in range(len(labels))] if groups is None else [str(g) for g in groups]
  if len(groups) != len(labels):
    raise ValueError(f'{len(labels)} labels but {len(groups)} groups')
  members: dict[str, list[int]] = {}
  for index, group in enumerate(groups):
    members.setdefault(group, []).append(index)
  group_label = {group: Counter(labels[i] for i in idx).most_common(1)[0][0]
                 for group, idx in members.items()}
  classes = sorted(set(group_label.values()), key=str)
  by_class = [sorted(g for g, label in group_label.items() if label == cls) for cls in classes]
  names = list(fractions)
  counts = _allocate([len(units) for units in by_class], [fractions[n] for n in names])
  assigned: dict[str, list[int]] = {name: [] for name in names}
  for class_index, units in enumerate(by_class):
    # One generator per class, so adding a class does not reshuffle the others.
    order = np.random.default_rng([seed, class_index]).permutation(len(units))
    bounds = np.concatenate([[0], np.cumsum(counts[class_index])])
    for split_index, name in enumerate(names):
      for position in order[bounds[split_index]:bounds[split_index + 1]]:
        assigned[name].extend(members[units[position]])
  return {name: np.array(sorted(indices), np.int64) for name, indices in assigned.items()}


def merge_groups(groups: Sequence[str], left, right) -> list[str]:
  """Each example's group after joining the groups of every pair of examples (left[p],
  right[p]), e.g. copies of one image filed under two lesions.

  A joined group is named by the smallest name among those it joins, so a group that
  joins no other keeps its name (and `stratified_split` places it as before).
  """
  groups = [str(g) for g in groups]
  names = sorted(set(groups))
  node = {name: k for k, name in enumerate(names)}
  roots = duplicates.components(len(names), [node[groups[i]] for i in left],
                                [node[groups[j]] for j in right])
  return [names[roots[node[g]]] for g in groups]
