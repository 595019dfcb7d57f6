"""Splits: grouped by lesion, stratified by class, deterministic; paper 1's balancing and the
class-weighted loss beside it."""

from collections import Counter

import numpy as np
import pytest

from skinjax.data import balance
from skinjax.data.splits import stratified_split

FRACTIONS = {'train': 0.7, 'validation': 0.1, 'test': 0.2}
HAM10000_COUNTS = {'nv': 6705, 'mel': 1113, 'bkl': 1099, 'bcc': 514, 'akiec': 327,
                   'vasc': 142, 'df': 115}
HAM10000_NAMES = ('akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc')


@pytest.fixture(scope='module')
def grouped_case():
  """900 lesions in 5 imbalanced classes, 1 to 4 images each."""
  rng = np.random.default_rng(0)
  labels, groups = [], []
  for lesion in range(900):
    label = rng.choice(5, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    for _ in range(rng.integers(1, 5)):
      labels.append(label)
      groups.append(f'HAM_{lesion:07d}')
  return np.array(labels), np.array(groups)


def test_every_example_lands_in_exactly_one_split(grouped_case):
  labels, groups = grouped_case
  assignment = stratified_split(labels, FRACTIONS, groups=groups)
  everything = np.concatenate(list(assignment.values()))
  assert sorted(everything.tolist()) == list(range(len(labels)))


def test_no_lesion_appears_in_two_splits(grouped_case):
  labels, groups = grouped_case
  assignment = stratified_split(labels, FRACTIONS, groups=groups)
  lesions = {name: set(groups[indices]) for name, indices in assignment.items()}
  assert not lesions['train'] & lesions['test']
  assert not lesions['train'] & lesions['validation']
  assert not lesions['validation'] & lesions['test']


def test_each_class_is_split_by_the_fractions_of_its_lesions(grouped_case):
  labels, groups = grouped_case
  assignment = stratified_split(labels, FRACTIONS, groups=groups)
  lesion_label = dict(zip(groups, labels))
  per_class = Counter(lesion_label.values())
  for name, fraction in FRACTIONS.items():
    counts = Counter(lesion_label[g] for g in set(groups[assignment[name]]))
    for label, total in per_class.items():
      assert abs(counts[label] - fraction * total) <= 1, (name, label)
  total_lesions = len(lesion_label)
  for name, fraction in FRACTIONS.items():
    assert abs(len(set(groups[assignment[name]])) - fraction * total_lesions) < 1


def test_the_split_ignores_row_order_and_repeats_for_a_seed(grouped_case):
  labels, groups = grouped_case
  first = stratified_split(labels, FRACTIONS, groups=groups, seed=7)
  shuffle = np.random.default_rng(1).permutation(len(labels))
  second = stratified_split(labels[shuffle], FRACTIONS, groups=groups[shuffle], seed=7)
  for name in FRACTIONS:
    assert set(groups[first[name]]) == set(groups[shuffle][second[name]])
  other_seed = stratified_split(labels, FRACTIONS, groups=groups, seed=8)
  assert set(groups[other_seed['test']]) != set(groups[first['test']])


def test_small_sets_still_hit_the_overall_sizes():
  """36 images, 4 per class, 80/10/10: 28.8/3.6/3.6 rounds to 29/4/3."""
  labels = np.repeat(np.arange(9), 4)
  assignment = stratified_split(labels, {'train': 0.8, 'validation': 0.1, 'test': 0.1})
  assert {name: len(idx) for name, idx in assignment.items()} == {
      'train': 29, 'validation': 4, 'test': 3}


def test_fractions_must_sum_to_one():
  with pytest.raises(ValueError, match='sum to 1'):
    stratified_split([0, 1], {'train': 0.7, 'test': 0.2})


def ham10000_labels():
  return np.repeat(np.arange(7), [HAM10000_COUNTS[name] for name in HAM10000_NAMES])


def test_paper1_balancing_reproduces_table_4_and_its_45756_images():
  labels = ham10000_labels()
  balanced = balance.duplicate_by_class(np.arange(len(labels)), labels, HAM10000_NAMES)
  counts = Counter(HAM10000_NAMES[label] for label in labels[balanced])
  # Table 4: Counts + Counts * factor + Counts.
  assert counts == {'nv': 6705, 'mel': 6678, 'bkl': 6594, 'bcc': 6682, 'akiec': 6213,
                    'vasc': 6674, 'df': 6210}
  assert len(balanced) == 45_756


def test_paper_protocol_puts_copies_of_one_image_in_train_and_test():
  labels = ham10000_labels()
  split = balance.paper_split(labels, HAM10000_NAMES)
  assert len(split['train']) + len(split['test']) == 45_756
  assert abs(len(split['test']) - 0.2 * 45_756) <= 1
  shared = set(split['train'].tolist()) & set(split['test'].tolist())
  assert len(shared) > 1000  # the leak the lesion-grouped default avoids


def test_balancing_factors_must_name_dataset_classes():
  with pytest.raises(ValueError, match=r"\['melanoma'\]"):
    balance.copies_per_class(HAM10000_NAMES, {'melanoma': 4})


def test_class_weights_equal_scikit_learns_balanced_weights():
  from sklearn.utils.class_weight import compute_class_weight
  labels = ham10000_labels()
  expected = compute_class_weight('balanced', classes=np.arange(7), y=labels)
  np.testing.assert_allclose(balance.inverse_frequency_weights(labels, 7), expected, rtol=1e-12)
  # Weighted, every class contributes as much loss as nv does: count * weight is constant.
  totals = np.bincount(labels) * np.array(balance.inverse_frequency_weights(labels, 7))
  np.testing.assert_allclose(totals, len(labels) / 7)


def test_a_class_absent_from_the_train_split_gets_weight_zero():
  weights = balance.inverse_frequency_weights(np.array([0, 0, 2, 2, 2, 2]), 3)
  assert weights[1] == 0.0
  assert weights[0] == pytest.approx(6 / (2 * 2)) and weights[2] == pytest.approx(6 / (2 * 4))
