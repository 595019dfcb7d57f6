"""Evaluation reports: report.json, scikit-learn's classification report, and PNG figures.

Figures follow what papers 1 and 2 plot: a confusion matrix, training curves (loss and
accuracy; Jaccard loss, Dice and IoU; precision and recall), a grid of sample predictions
with confidences, segmentation overlays and Grad-CAM overlays.
"""

import dataclasses
import json
import os
import textwrap

import matplotlib

matplotlib.use('Agg')  # files only; no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402


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
  # Wrapped to the figure's width: a 2-class matrix is narrower than a long dataset name.
  axis.set_title(textwrap.fill(title, width=int(8 * (size + 1))))
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
    axis.imshow(images[index], interpolation='nearest')
    _title_prediction(axis, int(labels[index]), probabilities[index], class_names)
  return _save(figure, path)


def _title_prediction(axis, label: int, probabilities, class_names):
  """'predicted probability' over 'true: class', green where right, red where wrong."""
  predicted = int(np.argmax(probabilities))
  axis.set_title(f'{class_names[predicted]} {probabilities[predicted]:.2f}\n'
                 f'true: {class_names[label]}', fontsize=9,
                 color='tab:green' if predicted == label else 'tab:red')


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


def plot_gradcam_overlays(images, heatmaps, labels, probabilities, class_names, path: str):
  """Images with the Grad-CAM heatmap of their predicted class (jet, half transparent),
  titled as the prediction grid is."""
  count = len(images)
  columns = min(4, count)
  rows = -(-count // columns)
  figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.5 * rows), squeeze=False)
  for axis in axes.ravel():
    axis.axis('off')
  for axis, image, heatmap, label, probability in zip(axes.ravel(), images, heatmaps, labels,
                                                      probabilities):
    axis.imshow(image)
    axis.imshow(heatmap, cmap='jet', alpha=0.45, vmin=0, vmax=1)
    _title_prediction(axis, int(label), probability, class_names)
  return _save(figure, path)


@dataclasses.dataclass
class ReportData:
  """What a report shows, handed over by the caller (skinjax.evaluation).

  header: report.json's identification: split, dataset, model, checkpoint step, and any
    further facts (a class map, what was left out); `examples` is added here.
  outputs: the task's per-example outputs (skinjax.train.tasks): 'predicted' and
    'probabilities' for a classifier, 'mask' for a segmenter.
  history: the run's epoch records (metrics.jsonl), for the training curves.
  gradcam: (uint8 images, heatmaps float32[n, S, S] of the predicted class, their labels,
    their probabilities) or None.
  """

  task: str
  header: dict
  metrics: dict
  images: np.ndarray  # uint8[N, S, S, 3]
  labels: np.ndarray  # int[N]
  masks: np.ndarray | None  # uint8[N, S, S, 1] for segmentation
  outputs: dict
  class_names: tuple[str, ...] | None = None
  history: list = dataclasses.field(default_factory=list)
  gradcam: tuple | None = None


def write_report(directory: str, data: ReportData) -> dict:
  """Writes report.json, figures and (classification) classification_report.txt into
  `directory`. Returns the report dict."""
  os.makedirs(directory, exist_ok=True)
  report = {**data.header, 'examples': int(len(data.images)), 'metrics': data.metrics,
            'figures': {}}
  figures = report['figures']
  if data.history:
    figures['training_curves'] = plot_training_curves(
        data.history, data.task, os.path.join(directory, 'training_curves.png'))
  drawable = len(data.images) > 0  # an empty split: its metrics say so (count 0)
  if drawable and data.task == 'classification':
    class_names = list(data.class_names)
    report['class_names'] = class_names
    predicted = data.outputs['predicted']
    labels = np.arange(len(class_names))
    # Imported here: scikit-learn takes 1.5 s to import, and every launcher imports this
    # module (a --help or a refused flag need not wait for it).
    from sklearn import metrics as skm  # pylint: disable=import-outside-toplevel
    report['classification_report'] = skm.classification_report(
        data.labels, predicted, labels=labels, target_names=class_names, zero_division=0,
        output_dict=True)
    text = skm.classification_report(data.labels, predicted, labels=labels,
                                     target_names=class_names, zero_division=0, digits=4)
    with open(os.path.join(directory, 'classification_report.txt'), 'w') as file:
      file.write(text)
    confusion = skm.confusion_matrix(data.labels, predicted, labels=labels)
    report['confusion_matrix'] = confusion.tolist()
    figures['confusion_matrix'] = plot_confusion_matrix(
        confusion, class_names, os.path.join(directory, 'confusion_matrix.png'),
        f'{report.get("model")} on {report.get("dataset")} [{report.get("split")}]')
    figures['predictions'] = plot_prediction_grid(
        data.images, data.labels, data.outputs['probabilities'], class_names,
        os.path.join(directory, 'predictions.png'))
  elif drawable:
    figures['segmentation_overlays'] = plot_segmentation_overlays(
        data.images, data.masks, data.outputs['mask'],
        os.path.join(directory, 'segmentation_overlays.png'))
  if data.gradcam is not None and drawable:
    figures['gradcam'] = plot_gradcam_overlays(*data.gradcam, class_names,
                                               os.path.join(directory, 'gradcam.png'))
  temporary = os.path.join(directory, 'report.json.tmp')
  with open(temporary, 'w') as file:
    json.dump(report, file, indent=2)
  os.replace(temporary, os.path.join(directory, 'report.json'))
  return report
