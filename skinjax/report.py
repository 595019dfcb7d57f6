"""Evaluation reports: report.json, scikit-learn's classification report, and PNG figures.

Figures follow what papers 1 and 2 plot: a confusion matrix, training curves (loss and
accuracy; Jaccard loss, Dice and IoU; precision and recall), a grid of sample predictions
with confidences, segmentation overlays and Grad-CAM overlays.
"""

import json
import os

import matplotlib

matplotlib.use('Agg')  # files only; no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from skinjax.train.metric_writer import read_history  # noqa: E402


def _save(figure, path):
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)
  return path


def plot_confusion_matrix(confusion: np.ndarray, class_names, path: str, title: str):
  """Counts in each cell, colour by the share of the true class (row)."""
  confusion = np.asarray(confusion)
  rows = confusion.sum(axis=1, keepdims=True)
  shares = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
  size = max(4.0, 0.75 * len(class_names) + 2)
  figure, axis = plt.subplots(figsize=(size + 1, size))
  image = axis.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  figure.colorbar(image, ax=axis, fraction=0.046, label='share of the true class')
  ticks = np.arange(len(class_names))
  axis.set_xticks(ticks, class_names, rotation=45, ha='right')
  axis.set_yticks(ticks, class_names)
  axis.set_xlabel('predicted')
  axis.set_ylabel('true')
  for (i, j), count in np.ndenumerate(confusion):
    axis.text(j, i, str(count), ha='center', va='center',
              color='white' if shares[i, j] > 0.5 else 'black', fontsize=8)
  axis.set_title(title)
  return _save(figure, path)


CURVE_PANELS = {
    'classification': [('loss', ['loss']), ('accuracy', ['accuracy', 'balanced_accuracy']),
                       ('precision and recall', ['precision_weighted', 'recall_weighted'])],
    'segmentation': [('Jaccard loss and accuracy', ['loss', 'pixel_accuracy']),
                     ('Dice and IoU', ['dice', 'iou', 'mean_iou']),
                     ('precision and recall', ['precision', 'recall'])],
}


def plot_training_curves(history: list[dict], task: str, path: str):
  """Train (solid) and validation (dashed) curves per epoch, one panel per group."""
  panels = CURVE_PANELS[task]
  figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
  epochs = [record['epoch'] + 1 for record in history]
  for axis, (title, keys) in zip(axes, panels):
    for colour, key in zip(plt.rcParams['axes.prop_cycle'].by_key()['color'], keys):
      for split, style in (('train', '-'), ('validation', '--')):
        values = [record.get(split, {}).get(key, np.nan) for record in history]
        axis.plot(epochs, values, style, color=colour, marker='o', markersize=3,
                  label=f'{split} {key}')
    phases = [r['phase'] for r in history]
    for position in range(1, len(phases)):
      if phases[position] != phases[position - 1]:
        axis.axvline(epochs[position] - 0.5, color='grey', linewidth=0.8)
    axis.set_title(title)
    axis.set_xlabel('epoch')
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
  return _save(figure, path)


def plot_prediction_grid(images, labels, probabilities, class_names, path: str, count=16):
  """Sample test images titled with the predicted class and its probability; green where
  right, red where wrong."""
  count = min(count, len(images))
  columns = 4
  rows = -(-count // columns)
  figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
  chosen = np.linspace(0, len(images) - 1, count).astype(int)
  for axis in axes.ravel():
    axis.axis('off')
  for axis, index in zip(axes.ravel(), chosen):
    predicted = int(np.argmax(probabilities[index]))
    axis.imshow(images[index], interpolation='nearest')
    right = predicted == int(labels[index])
    axis.set_title(f'{class_names[predicted]} {probabilities[index][predicted]:.2f}\n'
                   f'true: {class_names[int(labels[index])]}', fontsize=9,
                   color='tab:green' if right else 'tab:red')
  return _save(figure, path)


def plot_segmentation_overlays(images, true_masks, predicted_masks, path: str, count=8):
  """Each image with the true outline (green) and the predicted one (red), and its Dice."""
  count = min(count, len(images))
  columns = 4
  rows = -(-count // columns)
  figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
  for axis in axes.ravel():
    axis.axis('off')
  for axis, index in zip(axes.ravel(), np.linspace(0, len(images) - 1, count).astype(int)):
    true, predicted = true_masks[index, ..., 0] > 0, predicted_masks[index, ..., 0] > 0
    axis.imshow(images[index])
    for mask, colour in ((true, 'lime'), (predicted, 'red')):
      if mask.any() and not mask.all():
        axis.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=1.5)
    union = true.sum() + predicted.sum()
    dice = 2 * (true & predicted).sum() / union if union else 1.0
    axis.set_title(f'Dice {dice:.3f} (green true, red predicted)', fontsize=8)
  return _save(figure, path)


def plot_gradcam_overlays(images, heatmaps, titles, path: str):
  """Images with their Grad-CAM heatmaps (jet, half transparent)."""
  count = len(images)
  columns = min(4, count)
  rows = -(-count // columns)
  figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
  for axis in axes.ravel():
    axis.axis('off')
  for axis, image, heatmap, title in zip(axes.ravel(), images, heatmaps, titles):
    axis.imshow(image)
    axis.imshow(heatmap, cmap='jet', alpha=0.45, vmin=0, vmax=1)
    axis.set_title(title, fontsize=9)
  return _save(figure, path)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)


def write_report(directory: str, *, run, split: str, metrics: dict, arrays, logits: np.ndarray,
                 workdir: str, gradcam=None) -> dict:
  """Writes report.json, figures and (classification) classification_report.txt.

  run: skinjax.train.run_state.RestoredRun; arrays: the split's SplitArrays; logits: the
  model's outputs on them, in order. gradcam: optional (images, heatmaps, titles).
  Returns the report dict.
  """
  os.makedirs(directory, exist_ok=True)
  task = run.description['task']
  report = {'split': split, 'dataset': run.description['dataset_full_name'],
            'model': run.description['model'], 'checkpoint_step': run.step,
            'examples': int(len(arrays)), 'metrics': metrics, 'figures': {}}
  figures = report['figures']
  history = read_history(workdir)
  if history:
    figures['training_curves'] = plot_training_curves(
        history, task, os.path.join(directory, 'training_curves.png'))
  if task == 'classification':
    class_names = run.description['class_names']
    report['class_names'] = list(class_names)
    probabilities = _softmax(logits)
    predicted = probabilities.argmax(axis=-1)
    labels = np.arange(len(class_names))
    report['classification_report'] = skm.classification_report(
        arrays.labels, predicted, labels=labels, target_names=class_names, zero_division=0,
        output_dict=True)
    text = skm.classification_report(arrays.labels, predicted, labels=labels,
                                     target_names=class_names, zero_division=0, digits=4)
    with open(os.path.join(directory, 'classification_report.txt'), 'w') as file:
      file.write(text)
    confusion = skm.confusion_matrix(arrays.labels, predicted, labels=labels)
    report['confusion_matrix'] = confusion.tolist()
    figures['confusion_matrix'] = plot_confusion_matrix(
        confusion, class_names, os.path.join(directory, 'confusion_matrix.png'),
        f'{report["model"]} on {report["dataset"]} [{split}]')
    figures['predictions'] = plot_prediction_grid(
        arrays.images, arrays.labels, probabilities, class_names,
        os.path.join(directory, 'predictions.png'))
  else:
    predicted_masks = (_sigmoid(logits) > 0.5).astype(np.uint8)
    figures['segmentation_overlays'] = plot_segmentation_overlays(
        arrays.images, arrays.masks, predicted_masks,
        os.path.join(directory, 'segmentation_overlays.png'))
  if gradcam is not None:
    figures['gradcam'] = plot_gradcam_overlays(*gradcam, os.path.join(directory, 'gradcam.png'))
  with open(os.path.join(directory, 'report.json'), 'w') as file:
    json.dump(report, file, indent=2)
  return report
