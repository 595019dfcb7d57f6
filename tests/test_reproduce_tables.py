"""Table 6's rendering from runs' summaries (launch/reproduce_tables.py): a row of several
seeds shows their mean and sample spread, a row part-done says how many of its seeds ran, a
row not run says so; the class mix comes from the confusion matrix' rows. (The tiny plan in
test_reproduce.py renders the tables from real runs.)"""

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'launch'))
import reproduce_plan  # noqa: E402  (launch/ is not a package)
import reproduce_tables  # noqa: E402

METRICS = ('accuracy', 'precision_weighted', 'recall_weighted', 'balanced_accuracy', 'f1_macro')


def summary(accuracy, confusion, train_accuracy=0.9, wall_s=120.0):
  metrics = {key: accuracy - 0.01 * i for i, key in enumerate(METRICS)}
  return {'scores': {'test': {'metrics': metrics, 'examples': int(np.sum(confusion)),
                              'confusion_matrix': confusion}},
          'last_epoch_train': {'accuracy': train_accuracy}, 'wall_s': wall_s,
          'class_names': ['akiec', 'nv']}


def cells_of(lines, label):
  found = [line for line in lines if line.startswith(f'| {label} |')]
  assert len(found) == 1, (label, lines)
  return [cell.strip() for cell in found[0].strip('|').split('|')]


def test_seeds_give_mean_and_sample_spread_part_done_and_missing_rows_are_named():
  runs = reproduce_plan.runs('cpu')
  rows = {row.key: row for row in reproduce_plan.rows() if row.table == 'table6'}
  summaries = {'dcn_paper_aug_s0': summary(0.80, [[1, 1], [2, 16]], wall_s=60.0),
               'dcn_paper_aug_s1': summary(0.78, [[1, 1], [2, 16]], wall_s=120.0),
               'dcn_paper_aug_s2': summary(0.75, [[2, 0], [3, 15]], wall_s=180.0),
               'dcn_lesion_duplication_s0': summary(0.675, [[3, 1], [1, 15]])}
  lines = reproduce_tables.render_table6(list(rows.values()), runs, summaries)
  cells = cells_of(lines, rows['paper_aug'].label)
  assert cells[1] == '3 of 3'
  for column, key in enumerate(METRICS, start=2):
    values = [100 * summaries[f'dcn_paper_aug_s{seed}']['scores']['test']['metrics'][key]
              for seed in range(3)]
    assert cells[column] == f'{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}'
  assert cells[-1] == '2.0'  # minutes per seed: the mean of 1, 2 and 3
  part = cells_of(lines, rows['lesion_duplication'].label)
  assert part[1] == '1 of 3' and part[2] == '67.50'
  assert part[-2] == 'akiec 20.0 / nv 80.0'  # the rows of its confusion matrix: 4 and 16
  missing = cells_of(lines, rows['lesion_none'].label)
  assert missing[1] == '0 of 1' and missing[2] == 'not run yet'
