"""The reproduction tables, made from the runs' summaries (launch/reproduce.py writes them)
and written between their markers in a markdown file, leaving the rest of it as it was.

A table's block is everything between `<!-- reproduce:<scale>:<table> begin -->` and
`<!-- reproduce:<scale>:<table> end -->`; a block not yet in the file is added at its end.
"""

import json
import os

import numpy as np

from reproduce_plan import Row


class MarkerError(ValueError):
  """The file's markers cannot be matched (one line naming the file and the marker)."""


TITLES = {
    'table6': "Paper 1, Table 6: DeepConvNet on HAM10000 (28x28)",
    'table8': "Paper 1, Table 8: U-Net segmentation",
    'fig17': 'Paper 1, Figure 17: segment, crop, classify, on the lesion test split',
    'pretraining': "Paper 2's in-domain start: B3 pretrained on HAM10000",
    'paper2': "Paper 2, Tables I-IV: EfficientNetV2-B3 + its head, two phases, on ISIC9",
    'comparisons': "The papers' comparison networks (paper 1's Table 6, paper 2's Table I), "
                   "each under paper 2's head, beside the papers' own models",
}

# (column header, metric key, scale): figures shown as percentages.
TABLE6_METRICS = (('accuracy', 'accuracy'), ('weighted precision', 'precision_weighted'),
                  ('weighted recall', 'recall_weighted'),
                  ('balanced accuracy', 'balanced_accuracy'), ('macro F1', 'f1_macro'))
TABLE8_METRICS = (('pixel accuracy', 'pixel_accuracy'), ('precision', 'precision'),
                  ('recall', 'recall'), ('Dice', 'dice'), ('IoU (lesion)', 'iou'),
                  ('mean IoU (two classes)', 'mean_iou'),
                  ('thresholded Jaccard (ISIC)', 'thresholded_jaccard'))

# Figures of other work, shown beside ours; not run here.
# (label, figures, test images, test class mix) of the published rows.
PUBLISHED_TABLE6 = (
    ('paper 1 as published (duplicate, then split; its test split also chose the '
     'checkpoint)', {'accuracy': '97.2', 'precision_weighted': '97.5',
                     'recall_weighted': '97.2'}, '9,151 copies',
     'balanced by its copies (always nv about 1/7)'),
    ('MedMNIST v2 DermaMNIST, ResNet-18 (28), split by image, no balancing (Yang et al. '
     '2023)', {'accuracy': '73.5'}, '2,005',
     "a random 20% of HAM10000's images, whose mix is nv 66.9 (akiec 3.3 / bcc 5.1 / "
     'bkl 11.0 / df 1.1 / mel 11.1 / vasc 1.4)'),
    ('DermaMNIST corrected for leakage, ResNet-18 (28) (Abhishek et al., '
     'kakumarabhishek/Corrected-Skin-Image-Datasets, their logs)',
     {'accuracy': '81.8-83.0'}, '-', '-'),
)
PUBLISHED_TABLE8 = (
    ("paper 1 as published (PH2 test split; its 'IoU' above its Dice can only be the "
     'two-class mean)', {'pixel_accuracy': '96.14', 'precision': '93.44', 'recall': '94.09',
                         'dice': '92.55', 'mean_iou': '96.43'}),
)


# Paper 2's own model after fine-tuning, Tables I-IV: (validation accuracy, test accuracy,
# weighted precision, recall, F1), in %.
PUBLISHED_PAPER2 = {
    'all9': ('85.13', '84.91', '85.62', '84.91', '84.68'),
    'benign_malignant': ('95.20', '94.00', '94.01', '94.00', '94.00'),
    'benign6': ('92.59', '89.56', '90.08', '89.56', '89.55'),
    'malignant3': ('98.70', '96.74', '96.74', '96.74', '96.74'),
}
# The comparison networks as the papers give them (paper 1's Table 6: test accuracy,
# precision, recall; paper 2's Table I after fine-tuning: test accuracy, weighted
# precision, recall, F1), by row key.
PUBLISHED_COMPARISONS = {
    'paper1_vgg16': 'acc 66.99, prec 83.52, rec 60.03',
    'paper1_resnet50': 'acc 66.83, prec 66.83, rec 66.83',
    'paper1_inceptionv3': 'acc 66.89, prec 85.19, rec 60.58',
    'paper1_xception': 'acc 66.73, prec 83.29, rec 61.04',
    'paper2_resnet50': 'acc 80.58, prec 80.74, rec 80.58, F1 80.08',
    'paper2_resnet50v2': 'acc 57.49, prec 59.21, rec 57.49, F1 57.35',
    'paper2_mobilenet': 'acc 58.49, prec 58.52, rec 58.49, F1 57.19',
    'paper2_mobilenetv2': 'acc 53.50, prec 54.78, rec 53.50, F1 53.39',
    'paper2_efficientnet_b3': 'acc 83.24, prec 83.69, rec 83.24, F1 82.86',
}
# The papers' own models, beside their comparison networks: (table, row key, label,
# published).
COMPARISON_REFERENCES = (
    ('table6', 'paper_aug', "DeepConvNet: paper 1's own model, as Table 6 above",
     'acc 97.20, prec 97.5, rec 97.2'),
    ('paper2', 'all9_ham10000_grouped', "EfficientNetV2-B3: paper 2's own model, as its "
     'all-nine HAM10000-started grouped row above', 'acc 84.91, prec 85.62, rec 84.91, '
     'F1 84.68'),
)
COMPARISON_METRICS = (('test accuracy', 'accuracy'), ('weighted precision', 'precision_weighted'),
                      ('weighted recall', 'recall_weighted'), ('weighted F1', 'f1_weighted'),
                      ('balanced accuracy', 'balanced_accuracy'))
PAPER2_METRICS = (('test accuracy', 'accuracy'), ('weighted precision', 'precision_weighted'),
                  ('weighted recall', 'recall_weighted'), ('weighted F1', 'f1_weighted'))


def markers(scale: str, table: str) -> tuple[str, str]:
  return (f'<!-- reproduce:{scale}:{table} begin -->',
          f'<!-- reproduce:{scale}:{table} end -->')


def load_summaries(folder: str, runs) -> dict:
  """name -> summary of each planned run that has one (an unreadable one counts as none)."""
  found = {}
  for run in runs:
    try:
      with open(os.path.join(folder, f'{run.name}.json')) as file:
        found[run.name] = json.load(file)
    except (OSError, ValueError):
      continue
  return found


def spread(values) -> str:
  """'80.26' for one value; 'mean ± sample std' for several, as percentages."""
  values = [100 * value for value in values]
  if len(values) == 1:
    return f'{values[0]:.2f}'
  return f'{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}'


def class_mix(summary, target: str = 'test') -> tuple[list, np.ndarray]:
  """(class names, share of each class in %) of a scored split (its confusion matrix' rows)."""
  counts = np.array(summary['scores'][target]['confusion_matrix']).sum(axis=1)
  names = summary.get('class_names') or [str(i) for i in range(len(counts))]
  return names, 100 * counts / counts.sum()


def majority(summary) -> str:
  """The test split's largest class and its share: the accuracy of always answering it."""
  names, shares = class_mix(summary)
  top = int(np.argmax(shares))
  return f'{names[top]} {shares[top]:.1f}'


def mix(summary) -> str:
  """'akiec 3.2 / bcc 5.1 / ...': the test split's class mix in %."""
  names, shares = class_mix(summary)
  return ' / '.join(f'{name} {share:.1f}' for name, share in zip(names, shares))


def minutes(summaries) -> str:
  return f'{np.mean([s["wall_s"] for s in summaries]) / 60:.1f}'


def row_runs(row, runs, summaries):
  planned = [run for run in runs if run.table == row.table and run.row == row.key]
  return planned, [summaries[run.name] for run in planned if run.name in summaries]


def render_table6(rows, runs, summaries) -> list[str]:
  head = ('| row | seeds | ' + ' | '.join(name for name, _ in TABLE6_METRICS) +
          ' | train accuracy, last epoch | test images | test class mix, % (always nv: '
          'its nv share) | minutes per seed |')
  lines = [head, '|' + ' --- |' * (len(TABLE6_METRICS) + 6)]
  for label, figures, examples, class_mix_text in PUBLISHED_TABLE6:
    cells = [figures.get(key, '-') for _, key in TABLE6_METRICS]
    lines.append(f'| {label} | - | {" | ".join(cells)} | - | {examples} | {class_mix_text} | - |')
  for row in rows:
    planned, done = row_runs(row, runs, summaries)
    if not planned:
      continue
    if not done:
      lines.append(f'| {row.label} | 0 of {len(planned)} | ' +
                   ' | '.join(['not run yet'] + ['-'] * (len(TABLE6_METRICS) + 3)) + ' |')
      continue
    cells = [spread([s['scores']['test']['metrics'][key] for s in done])
             for _, key in TABLE6_METRICS]
    train = spread([s['last_epoch_train'].get('accuracy', float('nan')) for s in done])
    examples = {s['scores']['test']['examples'] for s in done}
    lines.append(f'| {row.label} | {len(done)} of {len(planned)} | {" | ".join(cells)} | '
                 f'{train} | {"/".join(f"{n:,}" for n in sorted(examples))} | '
                 f'{mix(done[0])} | {minutes(done)} |')
  return lines


def render_table8(rows, runs, summaries) -> list[str]:
  head = ('| row | scored on | ' + ' | '.join(name for name, _ in TABLE8_METRICS) +
          ' | images | minutes |')
  lines = [head, '|' + ' --- |' * (len(TABLE8_METRICS) + 4)]
  for label, figures in PUBLISHED_TABLE8:
    cells = [figures.get(key, '-') for _, key in TABLE8_METRICS]
    lines.append(f'| {label} | PH2 | {" | ".join(cells)} | - | - |')
  for row in rows:
    planned, done = row_runs(row, runs, summaries)
    if not planned:
      continue
    if not done:
      lines.append(f'| {row.label} | - | ' + ' | '.join(
          ['not run yet'] + ['-'] * (len(TABLE8_METRICS) + 1)) + ' |')
      continue
    for target in done[0]['scores']:
      scores = [s['scores'][target] for s in done if target in s['scores']]
      where = 'its test split' if target == 'test' else target + ' (never trained on)'
      cells = [spread([score['metrics'][key] for score in scores])
               for _, key in TABLE8_METRICS]
      lines.append(f'| {row.label} | {where} | {" | ".join(cells)} | '
                   f'{scores[0]["examples"]:,} | {minutes(done)} |')
      kmeans = [score['kmeans'] for score in scores if score.get('kmeans')]
      if kmeans:
        cells = [spread([entry['metrics'][key] for entry in kmeans])
                 for _, key in TABLE8_METRICS]
        lines.append(f'| paper 2\'s k-means (k={kmeans[0]["k"]}) on the same images | {where} | '
                     f'{" | ".join(cells)} | {scores[0]["examples"]:,} | - |')
  return lines


def validation_accuracy(summary) -> float:
  best = summary.get('best_epoch') or {}
  return best.get('validation', {}).get('accuracy', float('nan'))


def render_paper2(rows, runs, summaries) -> list[str]:
  head = ('| scenario and row | validation accuracy (best epoch) | ' +
          ' | '.join(name for name, _ in PAPER2_METRICS) +
          ' | test images | test majority class % | minutes |')
  lines = [head, '|' + ' --- |' * (len(PAPER2_METRICS) + 5)]
  for scenario, figures in PUBLISHED_PAPER2.items():
    lines.append(f'| {scenario}: paper 2 as published (ImageNet start, split by file) | '
                 f'{" | ".join(figures)} | - | - | - |')
  for row in rows:
    planned, done = row_runs(row, runs, summaries)
    if not done:
      lines.append(f'| {row.label} | ' + ' | '.join(
          ['not run yet'] + ['-'] * (len(PAPER2_METRICS) + 3)) + ' |')
      continue
    cells = [spread([validation_accuracy(s) for s in done])] + [
        spread([s['scores']['test']['metrics'][key] for s in done])
        for _, key in PAPER2_METRICS]
    lines.append(f'| {row.label} | {" | ".join(cells)} | '
                 f'{done[0]["scores"]["test"]["examples"]:,} | {majority(done[0])} | '
                 f'{minutes(done)} |')
  return lines


def render_comparisons(rows, runs, summaries) -> list[str]:
  head = ('| network | published | seeds | ' + ' | '.join(name for name, _ in COMPARISON_METRICS)
          + ' | test images | minutes per seed |')
  lines = [head, '|' + ' --- |' * (len(COMPARISON_METRICS) + 5)]
  references = [(Row(table, key, label), published)
                for table, key, label, published in COMPARISON_REFERENCES]
  for row, published in references + [(row, PUBLISHED_COMPARISONS.get(row.key, '-'))
                                      for row in rows]:
    planned, done = row_runs(row, runs, summaries)
    if not planned:  # not at this scale
      continue
    if not done:
      lines.append(f'| {row.label} | {published} | 0 of {len(planned)} | ' + ' | '.join(
          ['not run yet'] + ['-'] * (len(COMPARISON_METRICS) + 1)) + ' |')
      continue
    cells = [spread([s['scores']['test']['metrics'][key] for s in done])
             for _, key in COMPARISON_METRICS]
    lines.append(f'| {row.label} | {published} | {len(done)} of {len(planned)} | '
                 f'{" | ".join(cells)} | {done[0]["scores"]["test"]["examples"]:,} | '
                 f'{minutes(done)} |')
  return lines


def render_pretraining(rows, runs, summaries) -> list[str]:
  lines = ['| row | HAM10000 train images left out | test accuracy | balanced accuracy | '
           'test images | minutes |', '|' + ' --- |' * 6]
  for row in rows:
    planned, done = row_runs(row, runs, summaries)
    if not planned:  # not at this scale
      continue
    if not done:
      lines.append(f'| {row.label} | not run yet | - | - | - | - |')
      continue
    summary = done[0]
    left_out = (summary.get('left_out') or {}).get('count', '-')
    metrics = summary['scores']['test']['metrics']
    lines.append(f'| {row.label} | {left_out} | {spread([metrics["accuracy"]])} | '
                 f'{spread([metrics["balanced_accuracy"]])} | '
                 f'{summary["scores"]["test"]["examples"]:,} | {minutes(done)} |')
  return lines


def render_fig17(rows, runs, summaries) -> list[str]:
  head = ('| classifier | scored on | ' + ' | '.join(name for name, _ in TABLE6_METRICS) +
          ' | images | no lesion found (scored whole) | mean crop area (of the image) |')
  lines = [head, '|' + ' --- |' * (len(TABLE6_METRICS) + 5)]
  for row in rows:
    planned, done = row_runs(row, runs, summaries)
    if not done:
      lines.append(f'| {row.label} | not run yet | ' + ' | '.join(
          ['-'] * (len(TABLE6_METRICS) + 3)) + ' |')
      continue
    on_crops = '--config.crop_to_lesion=True' in done[0]['identity']
    for target, shown in (('test', 'test images cut by their ground-truth masks' if on_crops
                           else 'whole test images'),
                          ('test-lesion_crops', "the U-Net's lesion crops of them")):
      scores = [s['scores'][target] for s in done if target in s['scores']]
      if not scores:
        continue
      cells = [spread([score['metrics'][key] for score in scores])
               for _, key in TABLE6_METRICS]
      crops = scores[0].get('crops') or {}
      missed = crops.get('no_lesion_found', '-')
      area = crops.get('mean_box_area')
      lines.append(f'| {row.label} | {shown} | {" | ".join(cells)} | '
                   f'{scores[0]["examples"]:,} | {missed} | '
                   f'{"-" if area is None else f"{100 * area:.1f}%"} |')
  return lines


RENDERERS = {'table6': render_table6, 'table8': render_table8, 'fig17': render_fig17,
             'pretraining': render_pretraining, 'paper2': render_paper2,
             'comparisons': render_comparisons}


def runs_list(table, runs, summaries, relative_to: str) -> list[str]:
  """Each run of the table: state, command(s), machine, wall time, figures."""
  lines = []
  for run in (run for run in runs if run.table == table):
    summary = summaries.get(run.name)
    if summary is None:
      lines.append(f'- `{run.name}`: not run yet')
      continue
    where = summary['machine']
    figures = ', '.join(
        f'[{name.replace("_", " ")}]({os.path.relpath(path, relative_to)})'
        for name, path in summary.get('figures', {}).items())
    epochs = summary['epochs']
    lines.append(f'- `{run.name}` (seed {summary["seed"]}, {epochs} epoch{"s" * (epochs != 1)}, '
                 f'{summary["wall_s"] / 60:.1f} min on {where["cpu_cores"]} cores of '
                 f'{where["cpu"]}, jax {where["jax"]}, finished {summary["finished"]})'
                 f'{": " + figures if figures else ""}')
    lines += [f'  `{command}`' for command in summary['commands']]
  return lines


def block(table, scale, rows, runs, summaries, note, relative_to) -> str:
  table_rows = [row for row in rows if row.table == table]
  lines = [f'### {TITLES[table]}, {scale} scale', '',
           f'Generated by `python launch/reproduce.py --scale={scale}` from its runs\' '
           f'summaries; do not edit between the markers. Scale: {note}. Figures are '
           'percentages on the test split, mean ± sample standard deviation over the seeds '
           'where a row has several.', '']
  lines += RENDERERS[table](table_rows, runs, summaries)
  lines += ['', 'Runs:', ''] + runs_list(table, runs, summaries, relative_to)
  return '\n'.join(lines)


def replace_blocks(text: str, blocks: dict, scale: str, path: str) -> str:
  for table, content in blocks.items():
    begin, end = markers(scale, table)
    starts, ends = text.count(begin), text.count(end)
    if starts == 0 and ends == 0:
      text = text.rstrip('\n') + f'\n\n{begin}\n{content}\n{end}\n'
      continue
    if starts != 1 or ends != 1 or text.index(begin) > text.index(end):
      raise MarkerError(f'{path}: expected one "{begin}" before one "{end}", found '
                        f'{starts} and {ends}{" in the wrong order" if starts == ends == 1 else ""}'
                        '; mend the markers (or remove both) and run again')
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = f'{head}{begin}\n{content}\n{end}{tail}'
  return text


def update(path: str, scale: str, rows, runs, summaries_dir: str, note: str) -> str:
  """Rewrites the scale's blocks of `path` (created when missing); the tables' names."""
  summaries = load_summaries(summaries_dir, runs)
  relative_to = os.path.dirname(os.path.abspath(path))
  tables = [table for table in RENDERERS if any(run.table == table for run in runs)]
  blocks = {table: block(table, scale, rows, runs, summaries, note, relative_to)
            for table in tables}
  try:
    with open(path) as file:
      text = file.read()
  except FileNotFoundError:
    text = '# Results\n'
  text = replace_blocks(text, blocks, scale, path)
  temporary = f'{path}.tmp-{os.getpid()}'
  with open(temporary, 'w') as file:
    file.write(text)
  os.replace(temporary, path)
  return ', '.join(tables)
