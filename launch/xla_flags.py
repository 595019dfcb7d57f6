"""The XLA flags a launcher adds to XLA_FLAGS: those the benchmark measured faster, each
only where this jaxlib knows it (XLA aborts the whole process on a flag it does not know).

  xla_flags.apply(cache_dir)  # before the first backend: XLA reads XLA_FLAGS once, then

A flag the user's XLA_FLAGS already sets keeps the user's value; `SKINJAX_XLA_FLAGS=0`
adds none. Whether this jaxlib accepts a flag is asked of a subprocess that starts XLA:CPU
with it; the answer is kept in `<cache_dir>/xla_flags.json` by jaxlib version and flag, so
the probe runs once per jaxlib, not at every start. A refused flag is left out with one
warning line. Nothing here raises: a launcher runs on at XLA's defaults instead.
"""

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile

from absl import logging

# XLA:CPU hands convolutions to YNNPACK by default; its kernels ran slower than XLA's
# Eigen convolutions here for every model's training step (2-core AMD EPYC, 2026-12-02,
# `XLA_FLAGS=... python benchmarks/skinjax_step.py --model=M ...`, XLA's defaults against
# them off: DeepConvNet @28 batch 64, 5,976 and 7,580 against 9,385 and 8,961 images/s;
# U-Net width 16 @224 batch 2, 474 against 239 ms a step; B3 @224 batch 8 in
# benchmarks/results/amd-epyc-2-cores.md, 5.7 against 6.3 images/s). The flag concerns
# XLA:CPU alone; GPU and TPU backends ignore it.
CPU_FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',)
CACHE_FILE = 'xla_flags.json'
# A cold `import jax` on a busy 2-core machine takes a few seconds; a probe this slow is
# left unanswered (not cached) and the flag out.
PROBE_SECONDS = 60
PROBE = "import jax; jax.devices('cpu')"


def apply(cache_dir: str | None, environ=os.environ, flags=None,
          run=subprocess.run) -> list[str]:
  """Appends to environ['XLA_FLAGS'] each of `flags` (default CPU_FLAGS) that the user's
  XLA_FLAGS does not set and this jaxlib accepts; the flags added. One info line says
  which, or why none; one warning line per flag refused. run: subprocess.run's stand-in."""
  try:
    return _apply(cache_dir, environ, CPU_FLAGS if flags is None else flags, run)
  except Exception as error:  # noqa: BLE001 - a launcher runs on at XLA's defaults
    logging.warning('XLA flags: none added (%s: %s)', type(error).__name__, error)
    return []


def _apply(cache_dir, environ, flags, run) -> list[str]:
  if environ.get('SKINJAX_XLA_FLAGS') == '0':
    logging.info('XLA flags: none added (SKINJAX_XLA_FLAGS=0)')
    return []
  given = environ.get('XLA_FLAGS', '')
  users = {_name(token) for token in given.split()}
  version = _jaxlib_version()
  added, theirs, refused = [], [], []
  for flag in flags:
    if _name(flag) in users:
      theirs.append(_name(flag))
    elif accepted(flag, version, cache_dir, environ, run):
      added.append(flag)
    else:
      refused.append(flag)
  if added:
    environ['XLA_FLAGS'] = ' '.join([given.strip()] + added).strip()
  parts = [f'added {" ".join(added)} (SKINJAX_XLA_FLAGS=0 turns this off)' if added
           else 'none added']
  if theirs:
    parts.append(f'XLA_FLAGS sets --{", --".join(theirs)} already (its value wins)')
  if refused:
    parts.append(f'left out {" ".join(refused)} (the warning above says why)')
  logging.info('XLA flags: %s', '; '.join(parts))
  return added


def _name(flag: str) -> str:
  return flag.lstrip('-').split('=', 1)[0]


def _jaxlib_version() -> str | None:
  try:
    return importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return None  # then nothing is cached: the answer would have no version to go by


def accepted(flag: str, version: str | None, cache_dir: str | None, environ=os.environ,
             run=subprocess.run) -> bool:
  """Whether this jaxlib starts XLA:CPU with `flag`: the cached answer, else a probe's.

  A refusal is cached only when XLA's error names the flag; a timeout or another failure
  is asked again at the next start. A refusal warns (one line) each time it is met.
  """
  path = os.path.join(cache_dir, CACHE_FILE) if cache_dir and version else None
  answers = _read(path)
  key = f'jaxlib {version} {flag}'
  if isinstance(answers.get(key), bool):
    if not answers[key]:
      logging.warning('XLA flags: jaxlib %s refuses %s; left out (as probed before: %s)',
                      version, flag, path)
    return answers[key]
  env = dict(environ, XLA_FLAGS=flag, JAX_PLATFORMS='cpu')
  try:
    done = run([sys.executable, '-c', PROBE], env=env, stdin=subprocess.DEVNULL,
               capture_output=True, text=True, timeout=PROBE_SECONDS, check=False)
  except subprocess.TimeoutExpired:
    logging.warning('XLA flags: left out %s (probing it on jaxlib %s took over %d s)', flag,
                    version, PROBE_SECONDS)
    return False
  except (OSError, subprocess.SubprocessError) as error:
    logging.warning('XLA flags: left out %s (could not probe jaxlib %s: %s)', flag, version,
                    error)
    return False
  if done.returncode == 0:
    _write(path, answers, key, True)
    return True
  last = ([line for line in (done.stderr or '').splitlines() if line.strip()] or [''])[-1]
  reason = last.split('] ', 1)[-1].strip()[:200] or f'exit status {done.returncode}'
  if _name(flag) in (done.stderr or ''):
    _write(path, answers, key, False)
  logging.warning('XLA flags: jaxlib %s refuses %s; left out (%s)', version, flag, reason)
  return False


def _read(path: str | None) -> dict:
  """The cached answers; {} when there are none or the file is damaged (probe again)."""
  if path is None:
    return {}
  try:
    with open(path) as file:
      answers = json.load(file)
  except (OSError, ValueError):
    return {}
  return answers if isinstance(answers, dict) else {}


def _write(path: str | None, answers: dict, key: str, answer: bool):
  """Adds one answer, atomically (a reader never sees half a file); a folder that cannot
  be written only means the probe runs again next time."""
  if path is None:
    return
  folder = os.path.dirname(path)
  try:
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix='.xla_flags.', suffix='.tmp')
  except OSError:
    return
  try:
    with os.fdopen(handle, 'w') as file:
      json.dump({**answers, key: answer}, file, indent=1, sort_keys=True)
    os.replace(temporary, path)
  except OSError:
    try:
      os.unlink(temporary)
    except OSError:
      pass
