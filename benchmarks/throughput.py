r"""Throughput suite: skinjax's train and eval steps beside Keras/TensorFlow and timm.

  python benchmarks/throughput.py                 # the CPU suite (what `make bench` runs)
  python benchmarks/throughput.py --preset=gpu    # the GPU goals: B3 @300, U-Net @224
                                                  # bf16, DeepConvNet @28 at large batch
  python benchmarks/throughput.py --models=efficientnetv2_b3_skin --image_size=224 \
      --batch_sizes=8,16 --dtypes=float32,bfloat16 --parallel=jit,pmap

A preset (benchmarks/suite.py) lists the skinjax configurations; each sweep flag, when
given, replaces that field in every configuration by each of its values. Every
configuration runs in a worker process of its own (skinjax_step.py), then the baselines
at the same model, size, batch and mode (keras_step.py, timm_step.py) and the depthwise
microbenchmark (depthwise.py). Rows: median images/s over timed windows after warm-up
(benchmarks/protocol.py), step time, compile time, peak device memory where the backend
reports it, FLOPs per image from XLA's cost analysis, TFLOP/s, MFU, and each skinjax
row's ratio to each baseline. Then, where the HAM10000 download is (--ham10000_dir), the
epoch row: 2 epochs of paper 1's DeepConvNet through launch/train.py beside the same
training in Keras (epoch_skinjax.py, epoch_keras.py, epoch_data.py), each epoch's
training and validation seconds side by side. Writes benchmarks/results/<device>.md and
.json.
"""

import datetime
import os
import shlex
import subprocess
import sys
import time

from absl import app, flags

import epoch_data
import protocol
import report
import suite

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

FLAGS = flags.FLAGS
EPOCH_KERAS_AUGMENT = ('auto', 'image_data_generator', 'layers')  # epoch_keras.py --augment
flags.DEFINE_enum('preset', 'cpu', sorted(suite.PRESETS),
                  'Configurations to run (benchmarks/suite.py); sweep flags change them.')
flags.DEFINE_list('models', [], 'Sweep: only these models (suite.BENCH_MODELS).')
flags.DEFINE_integer('image_size', None, 'Sweep: this image side for every row.')
flags.DEFINE_list('batch_sizes', [], 'Sweep: global batch sizes.')
flags.DEFINE_list('modes', [], 'Timed modes for every row: train, eval.')
flags.DEFINE_list('dtypes', [], 'Sweep: float32, bfloat16.')
flags.DEFINE_list('parallel', [], 'Sweep: pmap, jit.')
flags.DEFINE_list('devices', [], 'Sweep: device counts (on the CPU, virtual devices).')
flags.DEFINE_list('data', [], 'Sweep: step (the step alone), device (resident data, the '
                  'input pipeline with augmentation), stream (the same, streamed from host).')
flags.DEFINE_list('baselines', ['keras', 'timm'], 'Baselines to run: keras, timm.')
flags.DEFINE_enum('keras_jit_compile', 'auto', ['auto', 'true', 'false'],
                  'XLA for Keras (auto: off on the CPU, Keras default elsewhere).')
flags.DEFINE_enum('timm_compile', 'auto', ['auto', 'true', 'false'],
                  'Add a torch.compile row to each timm baseline (auto: on a GPU only, '
                  'where compiling pays for itself; true adds it on the CPU too).')
flags.DEFINE_bool('step_rows', True, 'Run the preset\'s step rows and their baselines '
                  '(false: only the microbenchmark and the epoch row, as their flags say).')
flags.DEFINE_bool('depthwise_bench', True, 'Run the depthwise microbenchmark.')
flags.DEFINE_integer('depthwise_image_size', None,
                     'B3 input side for the depthwise layers (default 300; 32 for --preset=tiny).')
flags.DEFINE_enum('epoch_bench', 'auto', ['auto', 'true', 'false'],
                  'The epoch row on the real HAM10000 (auto: with --preset=cpu only; it needs '
                  'TensorFlow to build the dataset).')
flags.DEFINE_string('ham10000_dir', os.path.join(os.path.dirname(REPO), 'shared', 'data',
                                                 'HAM10000'),
                    'The HAM10000 download the epoch row trains on; absent: the row is '
                    'skipped, with one line in the results.')
flags.DEFINE_integer('epoch_max_images', 0, 'The epoch row on this many of the download\'s '
                     'images, spread evenly over its metadata (0: all).', lower_bound=0)
flags.DEFINE_integer('epoch_epochs', 2, 'Epochs on each side of the epoch row.', lower_bound=1)
flags.DEFINE_list('epoch_keras_augment', ['auto'], 'Keras augmentation(s) of the epoch row: '
                  'image_data_generator, layers, auto (epoch_keras.py).')
flags.register_validator(
    'epoch_keras_augment', lambda kinds: set(kinds) <= set(EPOCH_KERAS_AUGMENT),
    message=f'takes {", ".join(EPOCH_KERAS_AUGMENT)}')
flags.DEFINE_string('epoch_cache_dir', None, 'Where the epoch row\'s dataset build and array '
                    'cache are kept between runs (default ~/.cache/skinjax/bench_data).')
flags.DEFINE_integer('windows', 5, 'Timed windows per row (median reported).')
flags.DEFINE_integer('warmup', 1, 'Untimed steps after the first (compiling) one.')
flags.DEFINE_float('min_window_s', 0.5, 'Shortest timed window, in seconds.')
flags.DEFINE_string('output_dir', os.path.join(HERE, 'results'), 'Where results go.')
flags.DEFINE_integer('worker_timeout_s', 1800, 'Longest a worker may run.')

BASELINES = ('keras', 'timm')


def _ints(flag):
  try:
    return [int(v) for v in FLAGS[flag].value]
  except ValueError:
    raise ValueError(f'--{flag} takes integers, got {FLAGS[flag].value}') from None


def run_worker(script: str, args: dict, what: str, xla_flags: str = '') -> list[dict]:
  """Runs benchmarks/<script> with `args` as flags (and `xla_flags` appended to
  XLA_FLAGS); its rows, or one row saying it failed."""
  command = [sys.executable, os.path.join(HERE, script)] + [
      f'--{k}={",".join(map(str, v)) if isinstance(v, (list, tuple)) else v}'
      for k, v in args.items()]
  # The checkout this file lives in is what gets measured, installed or not.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (REPO, HERE, os.environ.get('PYTHONPATH')) if p))
  if xla_flags:
    env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} {xla_flags}'.strip()
  print(f'-- {what}' + (f' [{xla_flags}]' if xla_flags else ''), flush=True)
  start = time.perf_counter()
  try:
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=FLAGS.worker_timeout_s)
    rows, returncode, tail = protocol.parse_rows(done.stdout), done.returncode, done.stderr
  except subprocess.TimeoutExpired as error:
    # The rows it printed before the timeout still count (timm's eager row before a
    # torch.compile that runs long).
    text = lambda out: out.decode(errors='replace') if isinstance(out, bytes) else out or ''
    printed = text(error.stdout)
    whole = printed[:printed.rfind('\n') + 1]  # a line cut off by the kill is dropped
    rows, returncode, tail = protocol.parse_rows(whole), 'timeout', text(error.stderr)
  for row in rows:
    if row.get('skipped'):
      print(f'   skipped: {row["skipped"]}', flush=True)
    elif 'per_epoch' in row:
      print('   ' + '; '.join(f'epoch {e["epoch"]}: {e["train_s"]:.1f} s training + '
                              f'{e["validation_s"]:.1f} s validation, {e["images_per_s"]:,.0f} '
                              'images/s' for e in row['per_epoch']), flush=True)
    elif 'images_per_s' in row:
      print(f'   {row.get("variant", "")} {row["mode"]}: {row["images_per_s"]:,.1f} images/s, '
            f'{1e3 * row["step_s"]:,.1f} ms/step, first step {row["first_step_s"]:.1f} s',
            flush=True)
  if returncode != 0:
    reason = f'worker exited {returncode}: ' + ' '.join(tail.strip().splitlines()[-3:])[-400:]
    print(f'   FAILED ({reason})\n   command: {shlex.join(command)}', flush=True)
    rows = rows + [{'framework': script.split('_')[0].split('.')[0], 'skipped': reason,
                    'model': args.get('model', ''), 'image_size': args.get('image_size', ''),
                    'batch_size': args.get('batch_size', '')}]
  print(f'   ({time.perf_counter() - start:.0f} s)', flush=True)
  return rows


def timing_args():
  return {'windows': FLAGS.windows, 'warmup': FLAGS.warmup,
          'min_window_s': FLAGS.min_window_s}


def baseline_rows(configs, platform: str) -> list[dict]:
  """Keras and timm at each (model, size, batch) the skinjax rows ran, in their modes."""
  for name in FLAGS.baselines:
    if name not in BASELINES:
      raise ValueError(f'--baselines: {name!r} is not one of {BASELINES}')
  keras_runs, timm_runs = {}, {}
  for c in configs:
    spec = suite.BENCH_MODELS[c.model]
    shape = (c.model, c.image_size, c.batch_size)
    if 'keras' in FLAGS.baselines and spec.keras:
      keras_runs.setdefault(shape + (c.dtype,), set()).update(c.modes)
    if 'timm' in FLAGS.baselines and spec.timm:
      timm_runs.setdefault(shape, set()).update(c.modes)
  rows = []
  for (model, size, batch, dtype), modes in keras_runs.items():
    if dtype != 'float32' and platform == 'cpu':
      print(f'-- Keras {model} @{size} batch {batch} {dtype}: not run (mixed precision on '
            'the CPU is no baseline anyone trains with)', flush=True)
      continue
    rows += run_worker('keras_step.py', dict(
        model=model, image_size=size, batch_size=batch, dtype=dtype,
        modes=sorted(modes, key=suite.MODES.index), jit_compile=FLAGS.keras_jit_compile,
        **timing_args()), f'Keras {model} @{size} batch {batch} {dtype}')
  compile_ = FLAGS.timm_compile == 'true' or (FLAGS.timm_compile == 'auto'
                                              and platform != 'cpu')
  if timm_runs and not compile_:
    print('-- timm torch.compile rows: not run (--timm_compile=true adds them)', flush=True)
  for (model, size, batch), modes in timm_runs.items():
    rows += run_worker('timm_step.py', dict(
        model=model, image_size=size, batch_size=batch,
        modes=sorted(modes, key=suite.MODES.index), compile=compile_,
        **timing_args()), f'timm {model} @{size} batch {batch}')
  return rows


def epoch_rows(ham10000_dir: str, *, max_images: int = 0, epochs: int = 2,
               keras_augment=('auto',), cache_dir: str | None = None) -> list[dict]:
  """The epoch row's two sides, each a worker process, skinjax's first; one skipped row
  when there is no download to train on."""
  why = epoch_data.missing(ham10000_dir)
  if why:
    print(f'-- epoch row: skipped ({why}; --ham10000_dir)', flush=True)
    return [{'bench': 'epoch', 'framework': 'skinjax', 'model': 'deepconvnet',
             'skipped': f'{why} (--ham10000_dir)'}]
  try:
    manual_dir, data_dir = epoch_data.sources(ham10000_dir, max_images, cache_dir)
  except (OSError, ValueError, KeyError) as error:  # a damaged download: the rows run so far stay
    why = f'{ham10000_dir} cannot be used: {error}'
    print(f'-- epoch row: skipped ({why})', flush=True)
    return [{'bench': 'epoch', 'framework': 'skinjax', 'model': 'deepconvnet', 'skipped': why}]
  args = dict(manual_dir=manual_dir, data_dir=data_dir, epochs=epochs)
  what = f'{epochs} epochs of paper 1\'s DeepConvNet on {manual_dir}'

  def side(script, framework, args, what, **fields):
    rows = run_worker(script, args, what)
    for row in rows:
      if row['framework'] == 'epoch':  # run_worker names a failed worker by its file
        row['framework'] = framework
      row.update(bench='epoch', model=row.get('model') or 'deepconvnet')
      for key, value in fields.items():
        row.setdefault(key, value)
    return rows

  rows = side('epoch_skinjax.py', 'skinjax',
              dict(args, launcher_timeout_s=FLAGS.worker_timeout_s),
              f'epoch row, skinjax launcher: {what}')
  for kind in keras_augment:
    rows += side('epoch_keras.py', 'keras',
                 dict(args, augment=kind, jit_compile=FLAGS.keras_jit_compile),
                 f'epoch row, Keras ({kind}): {what}', augment_kind=kind)
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  configs = suite.sweep(
      suite.preset(FLAGS.preset), models=FLAGS.models, image_size=FLAGS.image_size,
      modes=FLAGS.modes, batch_size=_ints('batch_sizes'), dtype=FLAGS.dtypes,
      parallel=FLAGS.parallel, devices=_ints('devices'), data=FLAGS.data)
  load_start = os.getloadavg()
  started = time.perf_counter()
  # Baselines run right after the skinjax rows they are compared with: on a shared
  # machine the load drifts, and neighbours in time see the most similar load.
  groups = {}
  for c in configs if FLAGS.step_rows else []:
    groups.setdefault((c.model, c.image_size, c.batch_size), []).append(c)
  rows, platform = [], None
  for group in groups.values():
    for c in group:
      found = run_worker('skinjax_step.py', dict(
          model=c.model, image_size=c.image_size, batch_size=c.batch_size, modes=c.modes,
          dtype=c.dtype, parallel=c.parallel, devices=c.devices, data=c.data,
          **timing_args()),
          f'skinjax {c.model} @{c.image_size} batch {c.batch_size} {c.dtype} '
          f'{c.parallel} x{c.devices} data={c.data}', xla_flags=c.xla_flags)
      for row in found:
        row['suite_xla_flags'] = c.xla_flags
        platform = platform or row.get('platform')
      rows += found
    rows += baseline_rows(group, platform or 'cpu')
  if FLAGS.depthwise_bench:
    size = FLAGS.depthwise_image_size or (32 if FLAGS.preset == 'tiny' else 300)
    tiny = FLAGS.preset == 'tiny'
    rows += run_worker('depthwise.py', dict(
        image_size=size, batch_size=8, reference_case=not tiny, windows=min(3, FLAGS.windows),
        **({'max_layers': 2} if tiny else {})), f'depthwise implementations on B3 @{size}')
  if FLAGS.epoch_bench == 'true' or (FLAGS.epoch_bench == 'auto' and FLAGS.preset == 'cpu'):
    rows += epoch_rows(FLAGS.ham10000_dir, max_images=FLAGS.epoch_max_images,
                       epochs=FLAGS.epoch_epochs, keras_augment=FLAGS.epoch_keras_augment,
                       cache_dir=FLAGS.epoch_cache_dir)
  report.add_derived(rows)
  load_end = os.getloadavg()
  versions = {}
  for row in rows:
    versions.update(row.get('versions', {}))
  meta = {
      'device': report.device_name(rows),
      'command': ' '.join(['python benchmarks/throughput.py'] + sys.argv[1:]),
      'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
      'seconds': round(time.perf_counter() - started),
      'load_average': {'start': load_start, 'end': load_end},
      'versions': versions,
      'note': (f'{os.cpu_count()} CPU cores; 1-minute load average {load_start[0]:.1f} at '
               f'the start and {load_end[0]:.1f} at the end (other work shares the machine '
               'when it exceeds the core count: compare rows as ratios within this run). '
               'Images/s: median of the timed windows; compile s: skinjax tracing + '
               'lowering + compiling, baselines their first step; MFU against dense bf16 '
               'peak; vs Keras / vs timm: skinjax images/s over the baseline row of the same '
               'model, size, batch and mode (timm: its faster row).'),
  }
  md, js = report.write(FLAGS.output_dir, rows, meta)
  print()
  print(report.markdown(rows, meta))
  print(f'wrote {md} and {js} ({meta["seconds"]} s)')


if __name__ == '__main__':
  app.run(main)
