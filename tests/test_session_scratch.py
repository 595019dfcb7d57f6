"""A test session leaves nothing in the temporary folder: its processes' temporary files
go into the session's scratch folder, which is removed when the session ends."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

INNER_TEST = '''
import json, os, subprocess, sys, tempfile

def test_leaves_temporary_files(tmp_path):
  made = tempfile.mkdtemp(suffix='tfds')  # as TFDS's DatasetInfo does
  child = subprocess.run([sys.executable, '-c', 'import tempfile; print(tempfile.mkdtemp())'],
                         capture_output=True, text=True, check=True).stdout.strip()
  with open(os.environ['SCRATCH_REPORT'], 'w') as report:
    json.dump({'made': made, 'child': child, 'tmp_path': str(tmp_path),
               'scratch': os.environ['SKINJAX_TEST_SCRATCH'],
               'cache': os.environ['JAX_COMPILATION_CACHE_DIR']}, report)
'''


def test_the_session_removes_what_its_processes_left_in_the_temporary_folder(tmp_path):
  (tmp_path / 'test_inner.py').write_text(INNER_TEST)
  report = tmp_path / 'report.json'
  env = {key: value for key, value in os.environ.items()
         if key not in ('SKINJAX_TEST_SCRATCH', 'JAX_COMPILATION_CACHE_DIR', 'TMPDIR',
                        'PYTEST_DEBUG_TEMPROOT', 'PYTEST_XDIST_WORKER')}
  env.update(SCRATCH_REPORT=str(report), PYTHONPATH=str(REPO))
  done = subprocess.run([sys.executable, '-m', 'pytest', '-p', 'conftest', '-p', 'no:cacheprovider',
                         '-q', '-n', '0', f'--rootdir={tmp_path}', str(tmp_path / 'test_inner.py')],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  seen = json.loads(report.read_text())
  scratch = Path(seen['scratch'])
  for key in ('made', 'child', 'cache'):
    assert Path(seen[key]).parent == scratch, (key, seen)
  assert not scratch.exists() and not Path(seen['made']).exists()
  # pytest's own folders are kept, outside the scratch, for a look after a failure.
  assert Path(seen['tmp_path']).exists() and scratch not in Path(seen['tmp_path']).parents


def test_a_session_started_inside_another_leaves_the_outer_scratch_alone(tmp_path):
  # As a test that runs pytest without clearing the environment would: the inner session
  # uses the outer one's scratch and must not remove it while the outer one still runs.
  (tmp_path / 'test_inner.py').write_text('def test_nothing():\n  pass\n')
  outer = tmp_path / 'outer_scratch'
  outer.mkdir()
  (outer / 'in_use').write_text('the outer session is still using this')
  env = dict(os.environ, SKINJAX_TEST_SCRATCH=str(outer), PYTHONPATH=str(REPO))
  done = subprocess.run([sys.executable, '-m', 'pytest', '-p', 'conftest', '-p', 'no:cacheprovider',
                         '-q', '-n', '0', f'--rootdir={tmp_path}', str(tmp_path / 'test_inner.py')],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  assert (outer / 'in_use').read_text() == 'the outer session is still using this'
