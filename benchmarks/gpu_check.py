r"""The GPU goals, measured on a lent GPU machine as it comes (`make gpu-check`).

  python benchmarks/gpu_check.py                 # on the GPU: about 5 minutes
  python benchmarks/gpu_check.py --tiny          # the same path at tiny sizes, on the CPU

Runs benchmarks/throughput.py once per goal (the GPU preset narrowed by its sweep flags to
the goal's rows: bfloat16 training, one device, jit; timm's rows beside B3's), then writes
benchmarks/results/<gpu>.md and .json: the suite's table, and one PASS or FAIL line per
goal:

  DeepConvNet @28 training, device-resident data: at least 1,000,000 images/s
  U-Net (width 64) @224 training, bfloat16: at least 40% MFU (of the dense bf16 peak)
  EfficientNetV2-B3 @300 training, bfloat16: at least 1.3x timm's best row (eager or
    torch.compile, bf16 AMP) at the same batch

Each goal's figure is its best row over the batch sizes tried. The lent machine has no
TensorFlow, TFDS, Keras or ml_collections and reaches no registry: nothing on this path
imports them, so Keras rows are not run (tests/test_gpu_check.py runs --tiny with them
hidden). Exit status 1 when a goal's skinjax rows did not run; a goal missed is a FAIL
line, not an error. The results are rewritten after each goal, so a run stopped early
keeps what it measured. --tiny writes to a fresh temporary folder unless --output_dir is
given (its CPU rows must not replace a CPU results file).
"""

import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import report

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

FLAGS = flags.FLAGS
flags.DEFINE_bool('tiny', False, 'Tiny models and sizes, one short window: the path, not '
                  'the figures (seconds on the CPU).')
flags.DEFINE_string('output_dir', None, 'Where <device>.md and .json go (default '
                    'benchmarks/results; with --tiny, a new temporary folder).')
flags.DEFINE_list('goals', [], 'Only these goals (default all): deepconvnet, unet, b3.')
flags.DEFINE_integer('worker_timeout_s', 240, 'Longest one worker (one row) may run.')


@dataclasses.dataclass(frozen=True)
class Goal:
  """One GPU goal: the skinjax rows that measure it and the figure it sets.

  figure: the skinjax row field compared with `target` (benchmarks/report.py adds mfu and
    vs_timm); the best row over `batch_sizes` counts.
  tiny: (model, image size, batch sizes) for --tiny.
  """

  key: str
  title: str
  figure: str
  target: float
  model: str
  image_size: int
  batch_sizes: tuple[int, ...]
  data: str
  tiny: tuple[str, int, tuple[int, ...]]
  baselines: str = ''


GOALS = (
    Goal('deepconvnet', 'DeepConvNet @28 training, bfloat16, device-resident data',
         'images_per_s', 1e6, 'deepconvnet', 28, (16384, 65536), 'device',
         tiny=('deepconvnet', 28, (8,))),
    Goal('unet', 'U-Net (width 64) @224 training, bfloat16', 'mfu', 0.40, 'unet', 224,
         (32, 64), 'step', tiny=('unet_tiny', 32, (2,))),
    Goal('b3', 'EfficientNetV2-B3 @300 training, bfloat16, vs timm\'s best row', 'vs_timm',
         1.3, 'efficientnetv2_b3_skin', 300, (64,), 'step',
         tiny=('efficientnetv2_tiny_skin', 32, (2,)), baselines='timm'),
)

# Full runs: enough windows for a median; tiny runs: the path alone.
TIMING = {False: ['--windows=3', '--warmup=2', '--min_window_s=0.5'],
          True: ['--windows=1', '--warmup=0', '--min_window_s=0.01']}


def throughput_args(goal: Goal, tiny: bool) -> list[str]:
  """benchmarks/throughput.py's flags for `goal`'s rows."""
  model, size, batches = goal.tiny if tiny else (goal.model, goal.image_size,
                                                 goal.batch_sizes)
  return ['--preset=gpu', f'--models={model}', f'--image_size={size}',
          f'--batch_sizes={",".join(map(str, batches))}', '--modes=train',
          '--dtypes=bfloat16', '--parallel=jit', '--devices=1', f'--data={goal.data}',
          f'--baselines={goal.baselines}', '--depthwise_bench=false',
          # The epoch row needs TensorFlow and the download, which a lent GPU lacks.
          '--epoch_bench=false',
          f'--worker_timeout_s={FLAGS.worker_timeout_s}', *TIMING[tiny]]


def run_throughput(args: list[str]) -> dict:
  """throughput.py's results ({'meta', 'rows'}) for `args`; its progress goes to stdout."""
  with tempfile.TemporaryDirectory(prefix='gpu_check_') as folder:
    command = [sys.executable, os.path.join(HERE, 'throughput.py'), *args,
               f'--output_dir={folder}']
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, HERE, os.environ.get('PYTHONPATH')) if p))
    print('$ ' + ' '.join(['python benchmarks/throughput.py', *args]), flush=True)
    subprocess.run(command, env=env, check=False)
    found = [name for name in os.listdir(folder) if name.endswith('.json')]
    if not found:
      return {'meta': {}, 'rows': []}
    with open(os.path.join(folder, found[0])) as f:
      return json.load(f)


def _rows_of(goal: Goal, rows: list[dict], tiny: bool) -> list[dict]:
  model = goal.tiny[0] if tiny else goal.model
  return [r for r in rows if r.get('framework') == 'skinjax' and r.get('model') == model
          and r.get('mode') == 'train' and 'images_per_s' in r]


def _shown(goal: Goal, value: float, row: dict) -> str:
  if goal.figure == 'images_per_s':
    return f'{value:,.0f} images/s'
  if goal.figure == 'mfu':
    return f'{value:.1%} MFU ({row["tflops"]:.0f} TFLOP/s)'
  return f'{value:.2f}x timm ({row["vs_timm_variant"]})'


def _target(goal: Goal) -> str:
  return {'images_per_s': f'{goal.target:,.0f} images/s', 'mfu': f'{goal.target:.0%} MFU',
          'vs_timm': f'{goal.target:.1f}x timm'}[goal.figure]


def judge(goal: Goal, rows: list[dict], tiny: bool) -> dict:
  """The goal's verdict: status PASS, FAIL, NO FIGURE (its rows ran, the figure is
  unknown: no peak FLOP/s for the device, no timm row) or NOT RUN; and its line."""
  ours = _rows_of(goal, rows, tiny)
  model = goal.tiny[0] if tiny else goal.model
  verdict = {'goal': goal.key, 'title': goal.title, 'figure': goal.figure,
             'target': goal.target, 'value': None, 'batch_size': None}
  if not ours:
    why = '; '.join(r['skipped'] for r in rows if r.get('skipped')
                    and r.get('model') == model) or 'no skinjax row'
    verdict.update(status='NOT RUN', line=f'NOT RUN  {goal.title}: {why[:300]}')
    return verdict
  scored = [r for r in ours if r.get(goal.figure) is not None]
  if not scored:
    why = {'mfu': f'no dense bf16 peak known for {ours[0].get("device_kind")}',
           'vs_timm': 'no timm row (' + ('; '.join(
               r['skipped'] for r in rows if r.get('framework') == 'timm'
               and r.get('skipped')) or 'not run') + ')'}.get(goal.figure, 'no figure')
    verdict.update(status='NO FIGURE', line=f'NO FIGURE  {goal.title}: {why[:300]}')
    return verdict
  best = max(scored, key=lambda r: r[goal.figure])
  value = best[goal.figure]
  status = 'PASS' if value >= goal.target else 'FAIL'
  verdict.update(status=status, value=value, batch_size=best['batch_size'],
                 line=f'{status}  {goal.title}: {_shown(goal, value, best)} at batch '
                 f'{best["batch_size"]}, target {_target(goal)}')
  return verdict


def goals_markdown(verdicts: list[dict], tiny: bool) -> str:
  lines = ['## GPU goals', '']
  if tiny:
    lines += ['A --tiny run: tiny models at tiny sizes, so the figures are not the goals\'.',
              '']
  lines += [f'- {v["line"]}' for v in verdicts]
  return '\n'.join(lines) + '\n'


def write(output_dir: str, rows: list[dict], meta: dict, verdicts: list[dict],
          tiny: bool) -> str:
  """report.write's files, the goals in the json's meta and under the md's title."""
  meta = dict(meta, goals=verdicts)
  md_path, _ = report.write(output_dir, rows, meta)
  title, _, rest = report.markdown(rows, meta).partition('\n\n')
  with open(md_path, 'w') as f:
    f.write(f'{title}\n\n{goals_markdown(verdicts, tiny)}\n{rest}')
  return md_path


def main(argv):
  if len(argv) > 1:
    sys.exit(f'error: unexpected arguments: {argv[1:]}')
  known = [goal.key for goal in GOALS]
  for key in FLAGS.goals:
    if key not in known:
      sys.exit(f'error: --goals: {key!r} is not one of {known}')
  goals = [goal for goal in GOALS if not FLAGS.goals or goal.key in FLAGS.goals]
  tiny = FLAGS.tiny
  output_dir = FLAGS.output_dir or (tempfile.mkdtemp(prefix='skinjax_gpu_check_') if tiny
                                    else os.path.join(HERE, 'results'))
  started, load_start = time.perf_counter(), os.getloadavg()
  rows, meta, verdicts, md_path = [], {}, [], None
  for done, goal in enumerate(goals, start=1):
    results = run_throughput(throughput_args(goal, tiny))
    rows += results['rows']
    meta = meta or results['meta']
    report.add_derived(rows)
    verdicts = [judge(g, rows, tiny) for g in goals[:done]]
    if rows:
      versions = {}
      for row in rows:
        versions.update(row.get('versions', {}))
      load_end = os.getloadavg()
      meta = dict(
          meta, device=report.device_name(rows), versions=versions,
          command=' '.join(['python benchmarks/gpu_check.py'] + sys.argv[1:]),
          date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
          seconds=round(time.perf_counter() - started),
          load_average={'start': load_start, 'end': load_end})
      meta.setdefault('note', '')
      md_path = write(output_dir, rows, meta, verdicts, tiny)
  print()
  print(goals_markdown(verdicts, tiny))
  if md_path:
    print(f'wrote {md_path} and its .json ({round(time.perf_counter() - started)} s)')
  if any(v['status'] == 'NOT RUN' for v in verdicts) or not md_path:
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
