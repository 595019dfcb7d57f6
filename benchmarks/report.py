"""The suite's results: ratios to the baselines, achieved TFLOP/s and MFU, the tables, and
the epoch row's section (skinjax's launcher and Keras, epoch by epoch).

MFU is achieved FLOP/s (XLA's count for the step, times images/s) over the devices' dense
bfloat16 peak, for every row whatever its dtype; a device not in PEAK_TFLOPS gets none.
"""

import json
import os
import re

# Dense bf16 tensor-core peaks, TFLOP/s per device (vendor data sheets; SXM parts).
PEAK_TFLOPS = {'H100': 989.0, 'H200': 989.0, 'A100': 312.0}

TABLE_COLUMNS = ('model', 'size', 'batch', 'mode', 'data', 'dtype', 'parallel', 'dev',
                 'framework', 'img/s', 'step ms', 'compile s', 'peak MiB', 'GFLOP/img',
                 'TFLOP/s', 'MFU', 'vs Keras', 'vs timm')


def peak_tflops(device_kind: str) -> float | None:
  for name, peak in PEAK_TFLOPS.items():
    if name.lower() in device_kind.lower():
      return peak
  return None


def cpu_name() -> str:
  model = 'cpu'
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          model = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  return f'{model}, {os.cpu_count()} cores'


def device_name(rows: list[dict]) -> str:
  """What ran the skinjax rows, e.g. 'NVIDIA H100 80GB HBM3' or 'AMD EPYC, 2 cores'."""
  for row in rows:
    if row.get('framework') == 'skinjax' and 'platform' in row:
      return cpu_name() if row['platform'] == 'cpu' else row['device_kind']
  return cpu_name()


def file_stem(name: str) -> str:
  return re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')


def _key(row):
  return (row['model'], row['image_size'], row['batch_size'], row['mode'])


def add_derived(rows: list[dict]) -> None:
  """Adds achieved TFLOP/s, MFU and the ratios to the baselines to each skinjax row.

  vs_keras: to the Keras row of the same model, size, batch, mode and dtype.
  vs_timm: to the fastest timm row (eager or compiled) of the same model, size, batch
    and mode, whatever its dtype (timm runs float32 on the CPU, bf16 AMP on a GPU).
  """
  keras = {_key(r) + (r['dtype'],): r for r in rows
           if r.get('framework') == 'keras' and 'images_per_s' in r}
  timm = {}
  for r in rows:
    if r.get('framework') == 'timm' and 'images_per_s' in r:
      best = timm.get(_key(r))
      if best is None or r['images_per_s'] > best['images_per_s']:
        timm[_key(r)] = r
  for row in rows:
    if row.get('framework') != 'skinjax' or 'images_per_s' not in row:
      continue  # the epoch row (epoch_section) and skipped rows have no step rate
    if row.get('flops_per_image'):
      achieved = row['flops_per_image'] * row['images_per_s'] / 1e12
      row['tflops'] = achieved
      peak = peak_tflops(row.get('device_kind', ''))
      row['mfu'] = achieved / (peak * row['devices']) if peak else None
    base = keras.get(_key(row) + (row['dtype'],))
    row['vs_keras'] = row['images_per_s'] / base['images_per_s'] if base else None
    base = timm.get(_key(row))
    row['vs_timm'] = row['images_per_s'] / base['images_per_s'] if base else None
    row['vs_timm_variant'] = base['variant'] if base else None


def _fmt(value, spec):
  return '' if value is None else format(value, spec)


def _cells(row):
  fw = row['framework']
  label = {'skinjax': 'skinjax', 'keras': 'Keras/TF', 'timm': 'timm'}[fw]
  if fw != 'skinjax':
    label += f' ({row["variant"]})'
  elif row.get('suite_xla_flags'):
    label += '*'  # footnoted under the table
  peak = row.get('peak_bytes')
  timm_ratio = _fmt(row.get('vs_timm'), '.2f')
  if timm_ratio:
    timm_ratio += f'x ({row["vs_timm_variant"]})'
  keras_ratio = _fmt(row.get('vs_keras'), '.2f')
  return (row['model'], row['image_size'], row['batch_size'], row['mode'], row['data'],
          row['dtype'], row.get('parallel', ''), row['devices'], label,
          _fmt(row['images_per_s'], ',.1f'), _fmt(1e3 * row['step_s'], ',.1f'),
          _fmt(row.get('compile_s') if fw == 'skinjax' else row.get('first_step_s'), '.1f'),
          _fmt(peak / 2**20 if peak else None, ',.0f'),
          _fmt(row['flops_per_image'] / 1e9 if row.get('flops_per_image') else None, '.3f'),
          _fmt(row.get('tflops'), '.3f'), _fmt(row.get('mfu'), '.1%'),
          keras_ratio + ('x' if keras_ratio else ''), timm_ratio)


def throughput_table(rows: list[dict]) -> str:
  """Markdown: each skinjax row followed by its baselines (each baseline listed once)."""
  timed = [r for r in rows if r.get('framework') in ('skinjax', 'keras', 'timm')
           and 'images_per_s' in r]
  if not timed:  # --step_rows=false
    return ''
  ordered, seen = [], set()
  for row in timed:
    if row['framework'] != 'skinjax':
      continue
    ordered.append(row)
    for base in timed:
      if base['framework'] != 'skinjax' and _key(base) == _key(row) and id(base) not in seen:
        ordered.append(base)
        seen.add(id(base))
  ordered += [r for r in timed if r['framework'] != 'skinjax' and id(r) not in seen]
  lines = ['| ' + ' | '.join(TABLE_COLUMNS) + ' |',
           '|' + '---|' * len(TABLE_COLUMNS)]
  lines += ['| ' + ' | '.join(str(c) for c in _cells(r)) + ' |' for r in ordered]
  return '\n'.join(lines)


def depthwise_table(rows: list[dict]) -> str:
  rows = [r for r in rows if r.get('framework') == 'depthwise' and 'implementation' in r]
  if not rows:
    return ''
  lines = ['| implementation | layer (B, H, W, C) | k | stride | x in B3 | forward ms | '
           'forward+backward ms | max abs error | max grad rel. error |', '|' + '---|' * 9]
  for r in rows:
    total = r['shape'] == 'B3 total'
    shape = (f'**B3 total** @{r["image_size"]}, batch {r["batch_size"]}' if total
             else 'x'.join(map(str, r['shape'])))
    lines.append(' | '.join([
        '', r['implementation'], shape, '' if total else str(r['kernel']),
        '' if total else str(r['stride']), '' if total else str(r['count_in_b3']),
        f'{r["forward_ms"]:.2f}', f'{r["forward_backward_ms"]:.2f}',
        '' if total else f'{r["max_abs_error"]:.1e}',
        '' if total else f'{r["max_grad_rel_error"]:.1e}', '']).strip())
  return '\n'.join(lines)


def skipped_lines(rows: list[dict]) -> list[str]:
  return [f'- {r["framework"]} {r["model"]} @{r["image_size"]} batch {r["batch_size"]}: '
          f'skipped ({r["skipped"]})' for r in rows
          if r.get('skipped') and r.get('bench') != 'epoch']


EPOCH_COLUMNS = ('framework', 'augmentation', 'images / epoch', 'epoch 1 train s',
                 'epoch 1 val s', 'epoch 1 img/s', 'epoch 2 train s', 'epoch 2 val s',
                 'epoch 2 img/s', 'wall s (all epochs)')


def _label(row) -> str:
  if row['framework'] == 'skinjax':
    return 'skinjax (launch/train.py)'
  return f'Keras/TF ({row.get("variant", "")})'


def _wall(row) -> float:
  return sum(e['train_s'] + e['validation_s'] for e in row['per_epoch'])


def _last_rate(row) -> float:
  return row['per_epoch'][-1]['images_per_s']


def epoch_section(rows: list[dict]) -> list[str]:
  """The epoch row (epoch_skinjax.py, epoch_keras.py): a table, the ratios, what was
  not measured; [] when the suite did not run it."""
  rows = [r for r in rows if r.get('bench') == 'epoch']
  if not rows:
    return []
  parts = ['## One epoch of paper 1\'s DeepConvNet on HAM10000: launcher against Keras', '']
  timed = [r for r in rows if r.get('per_epoch')]
  ours = next((r for r in timed if r['framework'] == 'skinjax'), None)
  if timed:
    first = ours or timed[0]
    parts += [
        f'`launch/configs/deepconvnet_ham10000.py` ({first["image_size"]}x'
        f'{first["image_size"]}, batch {first["batch_size"]}, Adam '
        f'{first["learning_rate"]:g}, balance '
        f'{first["balance"]}, {first["split_protocol"]}-grouped split) on '
        f'{first["dataset"]}: {first["train_examples"]:,} training examples an epoch after '
        f'balancing, {first["validation_examples"]:,} validated after each. Both sides train '
        'on the same arrays, decoded into skinjax\'s cache before either is timed (the '
        'decode is not in any time). img/s: training images over training seconds '
        '(augmentation and balancing included); epoch 1 includes compiling (skinjax, the '
        'persistent compilation cache off) or tracing (Keras); wall: training plus '
        'validation, no checkpoints, logs or process start. skinjax trains whole batches '
        '(the last partial one dropped), Keras every image; validation batches: '
        + ', '.join(f'{_label(r)} {r["eval_batch_size"]}' for r in timed)
        + '. Each side ran in a process of its own, skinjax first.', '',
        '| ' + ' | '.join(EPOCH_COLUMNS) + ' |', '|' + '---|' * len(EPOCH_COLUMNS)]
    for r in timed:
      cells = [_label(r), r['augment'], f'{r["per_epoch"][0]["images"]:,}']
      for e in r['per_epoch'][:2]:
        cells += [f'{e["train_s"]:.1f}', f'{e["validation_s"]:.1f}',
                  f'{e["images_per_s"]:,.0f}']
      cells += [''] * (len(EPOCH_COLUMNS) - 1 - len(cells)) + [f'{_wall(r):.1f}']
      parts.append('| ' + ' | '.join(cells) + ' |')
    parts.append('')
    for r in timed:
      if ours is None or r['framework'] != 'keras':
        continue
      last = len(ours['per_epoch'])
      parts.append(f'- skinjax / Keras ({r.get("augment_kind", r["augment"])}): epoch-{last} '
                   f'images/s {_last_rate(ours) / _last_rate(r):.2f}x, wall time of the '
                   f'{last} epochs {_wall(ours) / _wall(r):.2f}x (below 1: skinjax took less)')
    parts.append('')
  skipped = [r for r in rows if r.get('skipped')]
  if skipped:
    parts += ['Not measured:', ''] + [f'- {r["framework"]}: skipped ({r["skipped"]})'
                                      for r in skipped] + ['']
  return parts


def markdown(rows: list[dict], meta: dict) -> str:
  parts = [f'# Throughput on {meta["device"]}', '',
           f'Made by `{meta["command"]}` on {meta["date"]}.', '', meta['note'], '',
           throughput_table(rows), '']
  flags = sorted({r['suite_xla_flags'] for r in rows if r.get('suite_xla_flags')})
  if flags:
    parts += [f'\\* run with `XLA_FLAGS={" ".join(flags)}` (launch/xla_flags.py says why); '
              'skinjax rows without \\* run with XLA\'s defaults.', '']
  skipped = skipped_lines(rows)
  if skipped:
    parts += ['Not measured:', ''] + skipped + ['']
  table = depthwise_table(rows)
  if table:
    parts += ['## Depthwise convolution, per implementation', '', table, '']
  parts += epoch_section(rows)
  parts += ['Versions: ' + '; '.join(f'{k} {v}' for k, v in sorted(meta['versions'].items())),
            '']
  return '\n'.join(parts)


def write(output_dir: str, rows: list[dict], meta: dict) -> tuple[str, str]:
  """Writes <device>.json (every row, with meta) and <device>.md; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  stem = os.path.join(output_dir, file_stem(meta['device']))
  with open(stem + '.json', 'w') as f:
    json.dump({'meta': meta, 'rows': rows}, f, indent=1, sort_keys=True)
  with open(stem + '.md', 'w') as f:
    f.write(markdown(rows, meta))
  return stem + '.md', stem + '.json'
