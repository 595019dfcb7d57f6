"""The training loop from config to report: outputs, resumption, restoring on other devices,
refusing a mismatched checkpoint, and one-line flag errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from skinjax.data import synthetic
from skinjax.evaluation.restore import restore_run
from skinjax.train.checkpoint import CheckpointMismatchError
from skinjax.train.metric_writer import MetricWriteError, MetricWriter, read_history
from skinjax.train.spec import ConfigError, RunSpec, check_layout
from skinjax.train.workdir import check_writable
import launcher_env
from training_runs import classifier_spec, train, train_only

REPO = Path(__file__).resolve().parents[1]
tfds.disable_progress_bar()


def test_a_run_leaves_its_logs_checkpoints_and_report(classifier_run):
  workdir, metrics = classifier_run
  history = read_history(str(workdir))
  assert [record['epoch'] for record in history] == [0, 1]
  assert {'loss', 'accuracy', 'precision_weighted'} <= set(history[0]['validation'])
  assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
  assert json.loads((workdir / 'config.json').read_text())['class_names'] == list(
      synthetic.HAM10000_CLASSES)
  report = json.loads((workdir / 'report' / 'test' / 'report.json').read_text())
  assert report['metrics']['accuracy'] == pytest.approx(metrics['accuracy'])
  assert report['examples'] == 7  # 1 of 5 lesions per class, 7 classes, in test
  assert np.array(report['confusion_matrix']).sum() == 7
  assert 'weighted avg' in report['classification_report']
  for figure in ('confusion_matrix', 'training_curves', 'predictions', 'gradcam'):
    assert Path(report['figures'][figure]).stat().st_size > 10_000


def test_tensorboard_reads_each_epochs_scalars_at_its_step(classifier_run):
  # Written without TensorFlow (skinjax.train.metric_writer.EventFile), read by TensorBoard.
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  from tensorboard.util.tensor_util import make_ndarray
  workdir, _ = classifier_run
  events = EventAccumulator(str(workdir / 'tensorboard'))
  events.Reload()
  history = read_history(str(workdir))
  for tag, value in [('train/loss', lambda r: r['train']['loss']),
                     ('validation/accuracy', lambda r: r['validation']['accuracy']),
                     ('images_per_second', lambda r: r['images_per_second'])]:
    assert events.summary_metadata[tag].plugin_data.plugin_name == 'scalars'
    assert [(e.step, float(make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)] == [
        (r['step'], pytest.approx(value(r), rel=1e-6)) for r in history]


def assert_same_params(workdir_a, workdir_b, rtol=0.0):
  a, b = (restore_run(str(w), step='latest') for w in (workdir_a, workdir_b))
  assert a.step == b.step
  for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
    if rtol:  # another reduction order: float32 round-off, scaled by the leaf
      np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(np.abs(y).max()))
    else:
      np.testing.assert_array_equal(x, y)


def test_a_run_stopped_after_epoch_2_and_resumed_ends_where_an_uninterrupted_run_ends(
    classifier_run, layouts, tmp_path):
  # classifier_run stopped after its 2 epochs; a copy of it goes on to 3.
  shutil.copytree(classifier_run[0], tmp_path / 'resumed')
  train_only(classifier_spec(epochs=3), tmp_path / 'resumed', layouts)  # same workdir: resumes
  train_only(classifier_spec(epochs=3), tmp_path / 'straight', layouts)
  assert_same_params(tmp_path / 'resumed', tmp_path / 'straight')
  assert [r['epoch'] for r in read_history(str(tmp_path / 'resumed'))] == [0, 1, 2]


RESUME_WITH_JIT = """
import logging, sys
logging.basicConfig(level=logging.INFO)
from training_runs import classifier_spec, train_only
train_only(classifier_spec(epochs=2, augment='none', balance='none', parallel='jit'),
           sys.argv[1], {'data_dir': sys.argv[2], 'ham10000': sys.argv[3]})
"""


def test_a_pmap_run_on_4_devices_resumes_with_jit_on_2(layouts, tmp_path):
  # Augmentation draws depend on the device layout (pmap folds in the device index), so
  # this run has none; unbalanced, an epoch is 3 steps, so that Adam does not amplify
  # round-off into the comparison. One epoch with pmap on 4 devices, then the second on
  # 4 devices with pmap and on 2 with jit: the same parameters, to float32 round-off.
  train_only(classifier_spec(epochs=1, augment='none', balance='none'), tmp_path / 'pmap4',
             layouts)
  shutil.copytree(tmp_path / 'pmap4', tmp_path / 'jit2')
  train_only(classifier_spec(epochs=2, augment='none', balance='none'), tmp_path / 'pmap4',
             layouts)
  env = launcher_env.with_devices(2, PYTHONPATH=os.pathsep.join([str(REPO / 'tests'),
                                                                 str(REPO)]))
  env.pop('JAX_COMPILATION_CACHE_DIR', None)  # programs of another device assignment
  result = subprocess.run(
      [sys.executable, '-c', RESUME_WITH_JIT, str(tmp_path / 'jit2'), layouts['data_dir'],
       layouts['ham10000']], capture_output=True, text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'resuming from step 3' in result.stderr
  assert [r['epoch'] for r in read_history(str(tmp_path / 'jit2'))] == [0, 1]
  assert_same_params(tmp_path / 'jit2', tmp_path / 'pmap4', rtol=1e-5)


def test_a_checkpoint_of_another_resolution_is_refused_with_both_descriptions(
    classifier_run, layouts):
  workdir, _ = classifier_run
  with pytest.raises(CheckpointMismatchError,
                     match=r"holds model 'deepconvnet' with 7 classes .* at 28x28.*this run "
                           r"builds model 'deepconvnet' with 7 classes .* at 32x32"):
    train(classifier_spec(image_size=32), workdir, layouts)


def run_launcher(script, *args, devices=None):
  env = dict(os.environ) if devices is None else launcher_env.with_devices(devices)
  return subprocess.run([sys.executable, str(REPO / 'launch' / script), *args],
                        capture_output=True, text=True, timeout=600, env=env)


def test_evaluation_on_one_device_restores_a_four_device_run(classifier_run):
  workdir, metrics = classifier_run  # trained with pmap on the 4 test devices
  result = run_launcher('evaluate.py', f'--workdir={workdir}', '--split=test',
                        '--parallel=jit', devices=1)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((workdir / 'report' / 'test' / 'report.json').read_text())
  assert report['metrics']['accuracy'] == pytest.approx(metrics['accuracy'], abs=1e-6)
  assert report['metrics']['loss'] == pytest.approx(metrics['loss'], rel=1e-5)


@pytest.mark.parametrize('changes,message', [
    ({'model': 'resnet51'}, r"^--config.model='resnet51': unknown model; known: deepconvnet"),
    ({'parallel': 'xmap'}, r"^--config.parallel='xmap': expected one of pmap, jit"),
    ({'split_protocol': 'paper', 'dataset': 'ph2', 'dataset_config': '', 'balance': 'none'},
     r'^--config.split_protocol=paper: only defined for ham10000'),
    ({'augment': 'mixup'}, r"^--config.augment='mixup': expected one of none"),
    ({'task': 'segmentation', 'loss': 'jaccard', 'balance': 'none'},
     r"^--config.task=segmentation: model 'deepconvnet' is a classification model"),
    ({'loss': 'dice'}, r"^--config.loss='dice': a classification run uses one of "
                       r"softmax_cross_entropy"),
    ({'image_size': 8}, r'^--config.image_size=8: deepconvnet takes sizes at least 16'),
    ({'best_metric': 'dice'}, r"^--config.best_metric='dice': a classification run measures"),
    ({'dataset_config': 'masks'}, r"^--config.dataset_config='masks': ham10000 has no such "
                                  r"config; its configs: images, with_masks"),
    ({'balance': 'class_weights', 'class_weights': (1.0,) * 7},
     r'^--config.balance=class_weights: derives the weights from the train split'),
    ({'balance': 'class_weights', 'split_protocol': 'paper'},
     r'^--config.balance=class_weights: the paper protocol balances by duplication'),
])
def test_spec_mistakes_are_named_before_anything_is_built(changes, message):
  with pytest.raises(ConfigError, match=message):
    classifier_spec(**changes)


@pytest.mark.parametrize('changes,message', [
    ({'btach_size': 8}, r'^--config.btach_size: unknown field; did you mean --config.batch_size'),
    ({'batch_size': '8'}, r"^--config.batch_size='8': expected an integer"),
    ({'batch_size': True}, r'^--config.batch_size=True: expected an integer'),
    ({'normalization': {'mean': [0, 0]}}, r'^--config.normalization.mean=\[0, 0\]: expected 3'),
    ({'phases': [{'name': 'a', 'epochs': 1, 'lr': 1e-3}]},
     r'^--config.phases\[0\].lr: unknown field; known: name, epochs, learning_rate'),
    ({'phases': [{'name': 'a', 'epochs': 1, 'learning_rate': 1e-3,
                  'model_overrides': {'train_backbone': False}}]},
     r'^--config.phases\[0\].model_overrides: deepconvnet has no field\(s\) train_backbone'),
])
def test_a_config_is_read_into_a_spec_field_by_field(changes, message):
  config = classifier_spec().to_dict()
  config.update(changes)
  with pytest.raises(ConfigError, match=message):
    RunSpec.from_config(config)


def test_a_spec_round_trips_through_its_json():
  spec = classifier_spec(class_weights=(1.0,) * 7, seed=3)
  assert RunSpec.from_config(json.loads(json.dumps(spec.to_dict()))) == spec


def test_layout_rules_name_the_batch_and_the_devices():
  with pytest.raises(ConfigError, match=r'^--config.batch_size=6: must be a positive multiple '
                                        r'of the 4 device\(s\)'):
    check_layout(classifier_spec(batch_size=6), num_devices=4, process_count=1)
  with pytest.raises(ConfigError, match=r'^--config.parallel=pmap: runs in one process only'):
    check_layout(classifier_spec(), num_devices=4, process_count=2)


def test_an_unwritable_workdir_is_named():
  with pytest.raises(ConfigError, match='--workdir=/proc/no_such_dir: cannot write'):
    check_writable('/proc/no_such_dir')


def test_a_tensorboard_path_that_is_a_file_is_named_and_the_metrics_kept(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text('{"epoch": 0, "step": 4}\n')
  (tmp_path / 'tensorboard').write_text('not a folder')
  with pytest.raises(MetricWriteError, match=rf'^{tmp_path}/tensorboard: cannot write the '
                     r"run's metrics there \(File exists\)$"):
    MetricWriter(str(tmp_path), resume_epoch=0)  # would drop the epoch-0 record
  assert (tmp_path / 'metrics.jsonl').read_text() == '{"epoch": 0, "step": 4}\n'


def test_the_launcher_reports_a_flag_error_in_one_line(tmp_path):
  result = run_launcher('train.py', f'--config={REPO / "launch/configs/deepconvnet_ham10000.py"}',
                        f'--workdir={tmp_path / "run"}', '--config.batch_size=6', devices=4)
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert errors == ['error: --config.batch_size=6: must be a positive multiple of the 4 '
                    'device(s)'], result.stderr[-2000:]
  assert not (tmp_path / 'run' / 'checkpoints').exists()  # stopped before any work


def test_evaluating_a_workdir_without_checkpoints_says_so(tmp_path):
  result = run_launcher('evaluate.py', f'--workdir={tmp_path}')
  assert result.returncode == 2
  assert f'error: --workdir={tmp_path}: no checkpoints in' in result.stderr


def test_class_weighted_loss_keeps_the_train_splits_weights_for_the_restored_run(
    layouts, tmp_path):
  from sklearn.utils.class_weight import compute_class_weight
  from skinjax.data import experiment_data
  spec = classifier_spec(epochs=1, balance='class_weights', augment='none')
  train_only(spec, tmp_path / 'weighted', layouts)
  data = experiment_data.prepare(spec, data_dir=layouts['data_dir'],
                                 manual_dir=layouts['ham10000'])
  classes = len(synthetic.HAM10000_CLASSES)
  expected = compute_class_weight('balanced', classes=np.arange(classes),
                                  y=data.train.labels)
  assert len(data.train_indices) == len(data.train)  # weighted, not duplicated
  saved = json.loads((tmp_path / 'weighted' / 'config.json').read_text())['class_weights']
  np.testing.assert_allclose(saved, expected, rtol=1e-6)
  restored = restore_run(str(tmp_path / 'weighted'))
  np.testing.assert_allclose(restored.task.class_weights, expected, rtol=1e-6)
