"""tools/paper_protocol_leak.py: under paper 1's duplicate-then-split protocol, the test
copies of every duplicated class are images of the train split, and nv (never duplicated)
leaks none."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_duplicated_classes_leak_and_nv_does_not(layouts):
  done = subprocess.run([sys.executable, str(REPO / 'tools' / 'paper_protocol_leak.py'),
                         f'--manual_dir={layouts["ham10000"]}',
                         f'--data_dir={layouts["data_dir"]}', '--seeds=0,1'],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  lines = [line for line in done.stdout.splitlines() if line.startswith('seed ')]
  assert [line.split(':')[0] for line in lines] == ['seed 0', 'seed 1']
  for line in lines:  # a class with no test copy in this small layout reads 'none'
    shares = dict(re.findall(r'(\w+) (\d\.\d{3}|none)', line.split('by class: ')[1]))
    assert len(shares) == 7 and shares['nv'] in ('0.000', 'none')
    present = [float(share) for name, share in shares.items() if name != 'nv' and share != 'none']
    assert present and min(present) > 0.9
