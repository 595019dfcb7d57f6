"""`make reproduce`'s paper 2 rows at the tiny scale: the HAM10000 pretraining leaves
ISIC9's validation and test images out, exports its backbone, and the ISIC9 run that
--only names starts from that backbone (the pretraining is run for it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import launcher_env
from skinjax.convert.converted_weights import load_converted
from skinjax.evaluation.restore import restore_run

REPO = Path(__file__).resolve().parents[1]
RUN = 'b3_all9_ham10000_grouped_s0'
PRETRAINING = 'b3_ham10000_grouped_s0'


def launcher(script, *args):
  return subprocess.run([sys.executable, str(REPO / 'launch' / script), *args],
                        capture_output=True, text=True, timeout=900,
                        env=launcher_env.with_devices(1))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  root = tmp_path_factory.mktemp('reproduce_paper2')
  done = launcher('reproduce.py', '--scale=tiny', f'--workdir={root}', f'--only={RUN}')
  assert done.returncode == 0, done.stderr[-3000:]
  return root, done


def test_only_runs_the_named_run_and_the_pretraining_it_starts_from(tiny):
  root, done = tiny
  assert sorted(p.stem for p in (root / 'summaries').glob('*.json')) == sorted([RUN, PRETRAINING])
  assert done.stdout.index(PRETRAINING) < done.stdout.index(RUN)


def test_the_pretraining_leaves_out_isic9_validation_and_test_images(tiny):
  root, _ = tiny
  summary = json.loads((root / 'summaries' / f'{PRETRAINING}.json').read_text())
  left_out = json.loads((root / PRETRAINING / 'left_out.json').read_text())
  assert summary['left_out']['count'] == left_out['count'] > 0  # the planted copies
  assert summary['left_out']['splits'] == ['validation', 'test']
  assert summary['left_out']['dataset'].startswith('isic9/all9/')


def test_the_isic9_run_starts_from_the_exported_backbone(tiny):
  root, _ = tiny
  exported, config = load_converted(str(root / PRETRAINING / 'backbone'))
  pretrained = restore_run(str(root / PRETRAINING))
  assert config['model'] == 'efficientnetv2_tiny' and str(pretrained.step) in config['source']
  for ours, theirs in zip(jax.tree.leaves(exported['params']),
                          jax.tree.leaves(pretrained.state.params['backbone'])):
    np.testing.assert_array_equal(ours, theirs)
  log = (root / RUN / 'reproduce.log').read_text()
  backbone = root / PRETRAINING / 'backbone'  # absolute, or relative where that is shorter
  assert any(f'initialising the backbone from {shown}' in log
             for shown in (backbone, os.path.relpath(backbone, REPO)))
  summary = json.loads((root / 'summaries' / f'{RUN}.json').read_text())
  assert summary['best_epoch']['validation']['accuracy'] >= 0
  results = (root / 'RESULTS.md').read_text()
  assert '| all9: paper 2 as published' in results and 'not run yet' in results


def test_export_backbone_refuses_what_it_cannot_do_in_one_line(tiny, tmp_path):
  root, _ = tiny
  occupied = tmp_path / 'occupied'
  occupied.mkdir()
  (occupied / 'file').write_text('kept')
  cases = [
      ([f'--workdir={root / PRETRAINING}', f'--output={occupied}'], 'exists and is not an '
       'empty folder'),
      ([f'--workdir={tmp_path / "none"}', f'--output={tmp_path / "out"}'], 'no such folder'),
      ([f'--workdir={root / "dcn"}', f'--output={tmp_path / "out"}'], 'no such folder'),
      ([f'--workdir={root / PRETRAINING}', f'--output={tmp_path / "out"}', '--step=x'],
       "--step=x: expected 'best', 'latest' or a step number"),
  ]
  for args, message in cases:
    result = launcher('export_backbone.py', *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and message in lines[-1], result.stderr[-1500:]
    assert 'Traceback' not in result.stderr
  assert (occupied / 'file').read_text() == 'kept'
  assert not (tmp_path / 'out').exists()
