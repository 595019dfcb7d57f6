"""`make reproduce` at its tiny scale: every row runs, its tables land between their markers
with the runs' own scores, a rerun redoes nothing, an interrupted run is continued, and
each misuse stops in one line with nothing written. Paper 2's chain runs in the same plan:
the HAM10000 pretraining leaves ISIC9's validation and test images out, exports its
backbone, and the ISIC9 run that --only names starts from that backbone (the pretraining
is run for it) and trains paper 2's two phases, keeping each phase's final weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import launcher_env

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'launch'))
import reproduce_plan  # noqa: E402  (launch/ is not a package)
from skinjax.convert.converted_weights import load_converted  # noqa: E402
from skinjax.evaluation.restore import restore_run  # noqa: E402
from skinjax.train import build, phases  # noqa: E402
from skinjax.train.checkpoint import Checkpointer  # noqa: E402
from skinjax.train.lock import WorkdirLock  # noqa: E402
from skinjax.train.workdir import phase_dir, spec_of  # noqa: E402

# Paper 1's runs that take each path of the driver run here: a classifier (the first seed of
# a headline row), the U-Net with its PH2 and k-means evaluations, the crops of Fig. 17 (the
# other rows differ in overrides only, and every row's commands are checked in
# test_reproduce_plan.py; the seeds' mean and spread in test_reproduce_tables.py); and paper
# 2's chain, in the same plan run (one set of synthetic layouts and HAM10000 build for both).
PAPER1 = ('dcn_paper_aug_s0', 'dcn_lesion_crops_s0')
RUN = 'b3_all9_ham10000_grouped_s0'  # paper 2's, from the pretraining's backbone
PRETRAINING = 'b3_ham10000_grouped_s0'
NAMED = PAPER1 + (RUN,)  # what --only names
NEEDED = {'dcn_lesion_crops_s0': 'unet_ham10000_s0', RUN: PRETRAINING}  # and what they use
ONLY = f'--only={",".join(NAMED)}'
HAND_WRITTEN_ABOVE = '# Results\n\nA paragraph written by hand, above the tables.\n\n'
HAND_WRITTEN_BELOW = '\n## Written by hand below\n\nIt stays as it is.\n'


def reproduce(*args, timeout=1200):
  return subprocess.run([sys.executable, str(REPO / 'launch' / 'reproduce.py'),
                         '--scale=tiny', *args], capture_output=True, text=True,
                        timeout=timeout, env=launcher_env.with_devices(1))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """The whole tiny plan, run once into a results file that has hand-written text and an
  (empty) block of table 6 already."""
  root = tmp_path_factory.mktemp('reproduce')
  results = root / 'RESULTS.md'
  begin, end = ('<!-- reproduce:tiny:table6 begin -->', '<!-- reproduce:tiny:table6 end -->')
  results.write_text(f'{HAND_WRITTEN_ABOVE}{begin}\nstale\n{end}\n{HAND_WRITTEN_BELOW}')
  done = reproduce(f'--workdir={root / "runs"}', f'--results_file={results}', ONLY)
  assert done.returncode == 0, done.stderr[-3000:]
  return root, results, done


def planned_runs():
  """The runs ONLY runs: those it names and the runs they use."""
  names = set(NAMED) | set(NEEDED.values())
  return [run for run in reproduce_plan.runs('tiny') if run.name in names]


def summaries(root):
  folder = root / 'runs' / 'summaries'
  return {path.stem: json.loads(path.read_text()) for path in folder.glob('*.json')}


def test_only_runs_the_named_runs_and_those_they_start_from_first(tiny):
  root, _, done = tiny
  assert sorted(summaries(root)) == sorted(set(NAMED) | set(NEEDED.values()))
  for run, needed in NEEDED.items():
    assert done.stdout.index(f'reproduce: {needed} ') < done.stdout.index(f'reproduce: {run} ')


def test_every_planned_run_leaves_a_summary_with_its_reports_scores(tiny):
  root, _, _ = tiny
  found = summaries(root)
  assert sorted(found) == sorted(run.name for run in planned_runs())
  for name, summary in found.items():
    report = json.loads((root / 'runs' / name / 'report' / 'test' / 'report.json').read_text())
    assert summary['scores']['test']['metrics'] == report['metrics']
    assert summary['commands'][0].startswith('python launch/train.py ')
    for figure in summary['figures'].values():
      assert Path(REPO / figure if not os.path.isabs(figure) else figure).stat().st_size > 5000
  for name in ('dcn_paper_aug_s0', 'dcn_lesion_crops_s0'):  # classifiers keep their Grad-CAM
    assert 'gradcam' in found[name]['figures'], found[name]['figures']
  unet = found['unet_ham10000_s0']['scores']
  assert set(unet) == {'test', 'ph2-all'}
  assert unet['ph2-all']['examples'] == json.loads(
      (root / 'runs' / 'unet_ham10000_s0' / 'report' / 'ph2-all' / 'report.json').read_text()
  )['examples']


def table_line(text, label):
  lines = [line for line in text.splitlines() if line.startswith(f'| {label} |')]
  assert len(lines) == 1, (label, lines)
  return [cell.strip() for cell in lines[0].strip('|').split('|')]


def test_tables_hold_the_runs_scores_and_leave_the_text_around(tiny):
  root, results, _ = tiny
  text = results.read_text()
  assert text.startswith(HAND_WRITTEN_ABOVE) and HAND_WRITTEN_BELOW in text
  assert 'stale' not in text
  # Table 8 had no block: added once, at the end, after the hand-written text.
  assert text.count('<!-- reproduce:tiny:table8 begin -->') == 1
  assert text.index(HAND_WRITTEN_BELOW) < text.index('<!-- reproduce:tiny:table8 begin -->')
  found = summaries(root)
  rows = {row.key: row for row in reproduce_plan.rows()}
  single = found['dcn_paper_aug_s0']['scores']['test']
  cells = table_line(text, rows['paper_aug'].label)  # one of its two seeds ran
  assert cells[1] == '1 of 2' and cells[2] == f'{100 * single["metrics"]["accuracy"]:.2f}'
  assert table_line(text, rows['lesion_none'].label)[1:3] == ['0 of 1', 'not run yet']
  # The class mix, from the confusion matrix' rows (nv's share: always answering nv).
  counts = np.array(single['confusion_matrix']).sum(axis=1)
  nv = list(found['dcn_paper_aug_s0']['class_names']).index('nv')
  assert f'nv {100 * counts[nv] / counts.sum():.1f}' in cells[-2]
  assert cells[-2].count(' / ') == len(counts) - 1
  assert 'ph2-all (never trained on)' in text
  kmeans = found['unet_ham10000_s0']['scores']['ph2-all']['kmeans']['metrics']
  line = [line for line in text.splitlines()
          if line.startswith("| paper 2's k-means (k=3) on the same images | ph2-all")]
  assert len(line) == 1 and f'| {100 * kmeans["dice"]:.2f} |' in line[0]
  crops = found['dcn_lesion_crops_s0']['scores']['test-lesion_crops']
  cells = table_line(text, rows['lesion_crops'].label + ' | the U-Net\'s lesion crops of them')
  assert cells[2] == f'{100 * crops["metrics"]["accuracy"]:.2f}'
  assert cells[-2] == str(crops['crops']['no_lesion_found'])


def test_the_pretraining_leaves_out_isic9_validation_and_test_images(tiny):
  root, _, _ = tiny
  summary = summaries(root)[PRETRAINING]
  left_out = json.loads((root / 'runs' / PRETRAINING / 'left_out.json').read_text())
  assert summary['left_out']['count'] == left_out['count'] > 0  # the planted copies
  assert summary['left_out']['splits'] == ['validation', 'test']
  assert summary['left_out']['dataset'].startswith('isic9/all9/')


def test_the_isic9_run_starts_from_the_exported_backbone(tiny):
  root, results, _ = tiny
  exported, config = load_converted(str(root / 'runs' / PRETRAINING / 'backbone'))
  pretrained = restore_run(str(root / 'runs' / PRETRAINING))
  assert config['model'] == 'efficientnetv2_tiny' and str(pretrained.step) in config['source']
  for ours, theirs in zip(jax.tree.leaves(exported['params']),
                          jax.tree.leaves(pretrained.state.params['backbone'])):
    np.testing.assert_array_equal(ours, theirs)
  log = (root / 'runs' / RUN / 'reproduce.log').read_text()
  backbone = root / 'runs' / PRETRAINING / 'backbone'  # absolute, or relative where shorter
  assert any(f'initialising the backbone from {shown}' in log
             for shown in (backbone, os.path.relpath(backbone, REPO)))
  assert summaries(root)[RUN]['best_epoch']['validation']['accuracy'] >= 0
  text = results.read_text()
  assert '| all9: paper 2 as published' in text and 'not run yet' in text


def restore_phase(workdir, spec, index):
  checkpoints = Checkpointer(phase_dir(str(workdir), spec.phases[index].name), read_only=True)
  description, progress = checkpoints.read_config()
  model = build.model(spec, description['num_classes'])
  template, _ = phases.state_template(spec.phases[index], model, spec.image_size)
  state, _, _ = checkpoints.restore(template)
  return state, progress


def test_the_isic9_runs_two_phases_log_and_keep_their_final_weights(tiny):
  # Paper 2's launch (launch/configs/efficientnetv2_b3_isic9.py at the tiny scale): the head
  # on a frozen backbone, then fine-tuning, each phase's final weights kept.
  root, _, _ = tiny
  workdir = root / 'runs' / RUN
  spec = spec_of(json.loads((workdir / 'config.json').read_text()))
  lines = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [line['phase'] for line in lines] == ['frozen', 'finetune']
  frozen, frozen_progress = restore_phase(workdir, spec, 0)
  tuned, tuned_progress = restore_phase(workdir, spec, 1)
  assert frozen_progress['phase'] == 0 and tuned_progress['phase'] == 1
  assert tuned_progress['step'] == 2 * frozen_progress['step']  # one epoch each
  # Phase 2 moved the backbone that phase 1 kept frozen.
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                       frozen.params['backbone'], tuned.params['backbone'])
  assert any(jax.tree.leaves(moved))
  report = json.loads((workdir / 'report' / 'test' / 'report.json').read_text())
  assert len(report['class_names']) == 9 and 0.0 <= report['metrics']['accuracy'] <= 1.0


def launcher(script, *args):
  return subprocess.run([sys.executable, str(REPO / 'launch' / script), *args],
                        capture_output=True, text=True, timeout=900,
                        env=launcher_env.with_devices(1))


def test_export_backbone_refuses_what_it_cannot_do_in_one_line(tiny, tmp_path):
  root, _, _ = tiny
  pretraining = root / 'runs' / PRETRAINING
  occupied = tmp_path / 'occupied'
  occupied.mkdir()
  (occupied / 'file').write_text('kept')
  cases = [
      ([f'--workdir={pretraining}', f'--output={occupied}'], 'exists and is not an '
       'empty folder'),
      ([f'--workdir={tmp_path / "none"}', f'--output={tmp_path / "out"}'], 'no such folder'),
      ([f'--workdir={root / "runs" / "dcn"}', f'--output={tmp_path / "out"}'],
       'no such folder'),
      ([f'--workdir={pretraining}', f'--output={tmp_path / "out"}', '--step=x'],
       "--step=x: expected 'best', 'latest' or a step number"),
  ]
  for args, message in cases:
    result = launcher('export_backbone.py', *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and message in lines[-1], result.stderr[-1500:]
    assert 'Traceback' not in result.stderr
  assert (occupied / 'file').read_text() == 'kept'
  assert not (tmp_path / 'out').exists()


def test_a_rerun_trains_nothing_and_writes_the_same_tables(tiny):
  root, results, _ = tiny
  before = results.read_text()
  again = reproduce(f'--workdir={root / "runs"}', f'--results_file={results}', ONLY)
  assert again.returncode == 0, again.stderr[-2000:]
  assert 'launch/train.py' not in again.stderr  # no launcher ran
  assert again.stdout.count('done (its summary is kept)') == len(planned_runs())
  assert results.read_text() == before


def test_a_done_run_gains_a_figure_kept_since_without_training_again(tiny):
  root, results, _ = tiny
  before = results.read_text()
  path = root / 'runs' / 'summaries' / 'dcn_paper_aug_s0.json'
  summary = json.loads(path.read_text())
  figure = Path(summary['figures'].pop('gradcam'))
  figure.unlink()  # as a summary written before Grad-CAM figures were kept
  path.write_text(json.dumps(summary))
  again = reproduce(f'--workdir={root / "runs"}', f'--results_file={results}',
                    '--only=dcn_paper_aug_s0')
  assert again.returncode == 0, again.stderr[-2000:]
  assert 'launch/train.py' not in again.stderr
  assert json.loads(path.read_text())['figures']['gradcam'] == str(figure)
  assert figure.stat().st_size > 5000
  assert results.read_text() == before


def test_a_run_interrupted_before_its_summary_is_continued_not_restarted(tiny):
  root, results, _ = tiny
  name = 'dcn_paper_aug_s0'
  summary_path = root / 'runs' / 'summaries' / f'{name}.json'
  first = json.loads(summary_path.read_text())
  summary_path.unlink()  # as if stopped after training, before its summary
  again = reproduce(f'--workdir={root / "runs"}', f'--results_file={results}', f'--only={name}')
  assert again.returncode == 0, again.stderr[-2000:]
  assert f'{name} (interrupted)' in again.stdout
  second = json.loads(summary_path.read_text())
  # Resumed from its last checkpoint: the same scores, its time added to the first start's.
  assert second['scores'] == first['scores']
  assert second['wall_s'] > first['wall_s']


def test_a_run_interrupted_and_then_changed_is_started_again_clean(tiny):
  root, results, _ = tiny
  name = 'dcn_paper_aug_s0'
  workdir = root / 'runs' / name
  (root / 'runs' / 'summaries' / f'{name}.json').unlink()  # stopped before its summary...
  record = workdir / 'reproduce_training.json'
  record.write_text(json.dumps(json.loads(record.read_text()) + ['--config.other=1']))
  # ... by a plan whose row trained something else: train.py would refuse that workdir.
  again = reproduce(f'--workdir={root / "runs"}', f'--results_file={results}', f'--only={name}')
  assert again.returncode == 0, again.stderr[-2000:]
  assert f'{name} (changed)' in again.stdout
  assert 'resuming from step' not in (workdir / 'reproduce.log').read_text()


def test_misuse_stops_in_one_line_and_writes_nothing(tiny, tmp_path):
  root, results, _ = tiny
  before = results.read_text()
  cases = [
      (['--only=nothing*'], '--only=nothing*: nothing* matches no run; the runs: '
                            'dcn_paper_aug_s0'),
      ([f'--data_root={tmp_path / "missing"}'], f'--data_root={tmp_path / "missing"}: no such'),
      ([f'--data_root={tmp_path}'], 'no HAM10000/ folder, which dcn_paper_aug_s0 reads'),
      ([f'--results_file={tmp_path}'], 'a folder, not a file'),
      ([f'--results_file={tmp_path / "no" / "R.md"}'], 'its folder does not exist'),
  ]
  for args, message in cases:
    result = reproduce(f'--workdir={root / "runs"}', f'--results_file={results}', *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], (args, result.stderr[-1500:])
  assert results.read_text() == before


def test_broken_markers_are_named_and_the_file_is_left_alone(tiny, tmp_path):
  root, _, _ = tiny
  broken = tmp_path / 'RESULTS.md'
  broken.write_text('# Results\n<!-- reproduce:tiny:table8 begin -->\nno end marker\n')
  before = broken.read_text()
  result = reproduce(f'--workdir={root / "runs"}', f'--results_file={broken}', '--tables_only')
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [
      f'error: {broken}: expected one "<!-- reproduce:tiny:table8 begin -->" before one '
      '"<!-- reproduce:tiny:table8 end -->", found 1 and 0; mend the markers (or remove '
      'both) and run again']
  assert broken.read_text() == before


def test_a_second_reproduce_at_one_workdir_is_refused(tiny):
  root, results, _ = tiny
  before = results.read_text()
  with WorkdirLock(str(root / 'runs')):
    result = reproduce(f'--workdir={root / "runs"}', f'--results_file={results}',
                       '--tables_only')
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and 'another reproduce is running at this --workdir' in lines[0]
  assert results.read_text() == before
