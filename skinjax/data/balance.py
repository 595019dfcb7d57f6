"""Paper 1's class balancing by duplication, its split protocol, and class-weighted loss
as the alternative to duplication.

Paper 1 (Table 4) balances HAM10000 by repeating minority-class images: with a class's
"factor used" f, the class ends with `Counts + Counts * f + Counts` images, i.e. every
image appears f + 2 times (mel 1113 x 6 = 6678, ..., df 115 x 54 = 6210), nv stays as is,
and 10,015 images become the paper's 45,756.
"""

from typing import Mapping, Sequence

import numpy as np

# Table 4's "factor used" per HAM10000 class; classes not listed keep one copy.
PAPER1_FACTORS = {'mel': 4, 'bkl': 4, 'bcc': 11, 'akiec': 17, 'vasc': 45, 'df': 52}


def copies_per_class(class_names: Sequence[str], factors: Mapping[str, int]) -> np.ndarray:
  """int[C]: how many times each class's examples appear (factor + 2, or 1 if unlisted)."""
  unknown = set(factors) - set(class_names)
  if unknown:
    raise ValueError(f'balancing factors name classes {sorted(unknown)} that are not among '
                     f'the dataset classes {list(class_names)}')
  return np.array([factors[name] + 2 if name in factors else 1 for name in class_names])


def duplicate_by_class(indices: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                       factors: Mapping[str, int] = PAPER1_FACTORS) -> np.ndarray:
  """Repeats each index by its class's number of copies (acts on an index list only).

  indices: int[N] examples of one split (apply after splitting: see `paper_split`).
  labels: int[num_examples] class of every example of the dataset.
  """
  indices = np.asarray(indices)
  copies = copies_per_class(class_names, factors)[np.asarray(labels)[indices]]
  return np.repeat(indices, copies)


def inverse_frequency_weights(labels: np.ndarray, num_classes: int) -> tuple[float, ...]:
  """Per-class loss weights n / (classes * count), Keras users' `class_weight` as
  scikit-learn's compute_class_weight('balanced') gives it: every class then weighs as much
  in the loss as under balancing by duplication, without copying any image. A class with no
  training example gets 0 (it has no loss term to weigh)."""
  counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
  present = counts > 0
  weights = np.zeros(num_classes)
  weights[present] = counts.sum() / (present.sum() * counts[present])
  return tuple(float(weight) for weight in weights)


def paper_split(labels: np.ndarray, class_names: Sequence[str],
                factors: Mapping[str, int] = PAPER1_FACTORS, *, test_fraction: float = 0.2,
                seed: int = 0) -> dict[str, np.ndarray]:
  """Paper 1's protocol: duplicate first, then split the copies 80/20 at random.

  Copies of one image land in both train and test, and so do images of one lesion: test
  accuracy then measures memorisation as much as generalisation. Offered to reproduce the
  paper; the default protocol splits lesions first and balances the train split only.
  Returns {'train', 'test'} -> int64 indices into the dataset (with repeats).
  """
  everything = duplicate_by_class(np.arange(len(labels)), labels, class_names, factors)
  order = np.random.default_rng(seed).permutation(len(everything))
  test_size = int(round(test_fraction * len(everything)))
  return {'train': everything[order[test_size:]], 'test': everything[order[:test_size]]}
