"""--help prints a launcher's usage and flags and exits 0 (the launchers parse their own
FlagValues, where absl's help flags are not defined)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('launcher', ['train', 'evaluate', 'predict', 'demo', 'reproduce'])
def test_help_prints_the_flags_and_exits_zero(launcher):
  done = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', f'{launcher}.py'),
                         '--help'], capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert '--workdir' in done.stdout
  assert 'Traceback' not in done.stdout + done.stderr
