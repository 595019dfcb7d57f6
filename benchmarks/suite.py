"""What the throughput suite measures: the models, their baselines, and the presets.

A preset is a list of `RowConfig`s (data, not strings); the suite's sweep flags replace
one field in every row by each value of their list (see `sweep`).
"""

import dataclasses
import importlib.util
import itertools
import os

MODES = ('train', 'eval')
DTYPES = ('float32', 'bfloat16')
PARALLEL = ('pmap', 'jit')
# step: a ready float batch on the devices (the step alone). device / stream: the real
# input pipeline (skinjax.data.pipeline) with the model's augmentation, uint8 data
# resident on the devices or streamed from the host.
DATA = ('step', 'device', 'stream')


def _launch_module(name: str):
  """launch/<name>.py, loaded by its path: launch/ is a folder of scripts, not a package
  (only skinjax is installed), and benchmarks/ runs without the repository on sys.path."""
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'launch',
                      f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'launch_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# The launchers' XLA:CPU flags, written once in launch/xla_flags.py (which says why: each
# model's training step ran faster with them). The CPU preset runs with them, and keeps
# one B3 row with XLA's defaults to show the difference.
CPU_XLA_FLAGS = ' '.join(_launch_module('xla_flags').CPU_FLAGS)


@dataclasses.dataclass(frozen=True)
class BenchModel:
  """A skinjax registry model and its counterparts in the baselines.

  augment: the name of its augmentation in skinjax.augment (the paper's).
  scale_inputs: the pipeline maps pixels to [0, 1]; False leaves 0..255 for models that
    normalise themselves (EfficientNetV2's include_preprocessing).
  keras: the builder in benchmarks/keras_models.py; timm: a timm model name, or None.
  """

  task: str  # 'classification' or 'segmentation'
  num_classes: int
  default_size: int
  augment: str
  scale_inputs: bool = True
  keras: str | None = None
  timm: str | None = None


BENCH_MODELS = {
    'deepconvnet': BenchModel('classification', 7, 28, 'PAPER1_CLASSIFICATION',
                              keras='deepconvnet'),
    'unet': BenchModel('segmentation', 1, 224, 'PAPER1_SEGMENTATION', keras='unet'),
    'unet_small': BenchModel('segmentation', 1, 224, 'PAPER1_SEGMENTATION',
                             keras='unet_small'),
    'unet_tiny': BenchModel('segmentation', 1, 32, 'PAPER1_SEGMENTATION', keras='unet_tiny'),
    'efficientnetv2_b3_skin': BenchModel('classification', 9, 300, 'PAPER2_CLASSIFICATION',
                                         scale_inputs=False, keras='efficientnetv2_b3_skin',
                                         timm='tf_efficientnetv2_b3'),
    # The comparison networks under paper 2's head (issue 16), at Keras' default size.
    'resnet50_skin': BenchModel('classification', 9, 224, 'PAPER2_CLASSIFICATION',
                                scale_inputs=False, keras='resnet50_skin', timm='resnet50'),
    'resnet50v2_skin': BenchModel('classification', 9, 224, 'PAPER2_CLASSIFICATION',
                                  scale_inputs=False, keras='resnet50v2_skin',
                                  timm='resnetv2_50'),
    'vgg16_skin': BenchModel('classification', 9, 224, 'PAPER2_CLASSIFICATION',
                             scale_inputs=False, keras='vgg16_skin', timm='vgg16'),
    'inceptionv3_skin': BenchModel('classification', 9, 299, 'PAPER2_CLASSIFICATION',
                                   scale_inputs=False, keras='inceptionv3_skin',
                                   timm='inception_v3'),
    'xception_skin': BenchModel('classification', 9, 299, 'PAPER2_CLASSIFICATION',
                                scale_inputs=False, keras='xception_skin',
                                timm='legacy_xception'),
    'mobilenet_skin': BenchModel('classification', 9, 224, 'PAPER2_CLASSIFICATION',
                                 scale_inputs=False, keras='mobilenet_skin',
                                 timm='mobilenetv1_100'),
    'mobilenetv2_skin': BenchModel('classification', 9, 224, 'PAPER2_CLASSIFICATION',
                                   scale_inputs=False, keras='mobilenetv2_skin',
                                   timm='mobilenetv2_100'),
    'efficientnet_b3_skin': BenchModel('classification', 9, 300, 'PAPER2_CLASSIFICATION',
                                       scale_inputs=False, keras='efficientnet_b3_skin',
                                       timm='tf_efficientnet_b3'),
    # For tests: timm's own test-sized EfficientNet stands in for the tiny one.
    'efficientnetv2_tiny_skin': BenchModel('classification', 9, 32, 'PAPER2_CLASSIFICATION',
                                           scale_inputs=False,
                                           keras='efficientnetv2_tiny_skin',
                                           timm='test_efficientnet'),
}


@dataclasses.dataclass(frozen=True)
class RowConfig:
  """One skinjax measurement (a worker process), timed in each of `modes`."""

  model: str
  image_size: int
  batch_size: int
  modes: tuple[str, ...] = ('train',)
  dtype: str = 'float32'
  parallel: str = 'jit'
  devices: int = 1
  data: str = 'step'
  xla_flags: str = ''  # appended to XLA_FLAGS for this row's worker


COMPARISON_AT_96 = ('vgg16_skin', 'inceptionv3_skin', 'xception_skin', 'mobilenet_skin',
                    'mobilenetv2_skin', 'efficientnet_b3_skin')
COMPARISON_NETWORKS = ('resnet50_skin', 'resnet50v2_skin') + COMPARISON_AT_96


def _cpu_preset():
  b3 = 'efficientnetv2_b3_skin'
  rows = [
      RowConfig('deepconvnet', 28, 64, MODES),
      RowConfig('deepconvnet', 28, 64, ('train',), data='device'),
      RowConfig('deepconvnet', 28, 64, ('train',), data='stream'),
      RowConfig('deepconvnet', 28, 64, ('train',), parallel='pmap', devices=2),
      # The paper's U-Net took 9.6 s a step at batch 2 on 2 CPU cores (216 GFLOP an
      # image; skinjax_step.py --model=unet --image_size=224 --batch_size=2); the same
      # graph at a quarter of the width keeps the suite within minutes.
      RowConfig('unet_small', 224, 2, ('train',)),
      RowConfig(b3, 224, 8, ('train',)),
      RowConfig(b3, 300, 8, ('train',)),
      RowConfig('resnet50_skin', 224, 8, ('train',)),
      RowConfig('resnet50v2_skin', 224, 8, ('train',)),
  ]
  # The other comparison networks at 96x96 (above Keras' smallest inputs, 71 and 75), where
  # 2 cores take each in seconds a step.
  rows += [RowConfig(name, 96, 8, ('train',)) for name in COMPARISON_AT_96]
  return ([dataclasses.replace(row, xla_flags=CPU_XLA_FLAGS) for row in rows]
          + [RowConfig(b3, 224, 8, ('train',))])


def _gpu_preset():
  b3 = 'efficientnetv2_b3_skin'
  rows = []
  for batch in (4096, 16384, 65536):
    rows.append(RowConfig('deepconvnet', 28, batch, MODES, dtype='bfloat16'))
    rows.append(RowConfig('deepconvnet', 28, batch, ('train',), dtype='bfloat16',
                          data='device'))
  rows.append(RowConfig('deepconvnet', 28, 16384, ('train',), data='stream'))
  rows.append(RowConfig('deepconvnet', 28, 16384, ('train',)))
  for batch in (32, 64):
    rows.append(RowConfig('unet', 224, batch, MODES, dtype='bfloat16'))
  rows.append(RowConfig('unet', 224, 32, ('train',)))
  rows.append(RowConfig('unet', 224, 32, ('train',), dtype='bfloat16', data='device'))
  for batch in (32, 64, 128):
    rows.append(RowConfig(b3, 300, batch, MODES, dtype='bfloat16'))
  rows.append(RowConfig(b3, 300, 64, ('train',)))
  rows.append(RowConfig(b3, 300, 64, ('train',), dtype='bfloat16', data='device'))
  rows.append(RowConfig(b3, 300, 64, ('train',), dtype='bfloat16', parallel='pmap'))
  # The comparison networks at Keras' default sizes.
  rows += [RowConfig(name, BENCH_MODELS[name].default_size, 64, ('train',), dtype='bfloat16')
           for name in COMPARISON_NETWORKS]
  return rows


def _tiny_preset():
  # For tests: each worker starts in seconds; together they cover both wrappers, two
  # devices, bfloat16, the streamed pipeline and a Keras baseline.
  return [
      RowConfig('deepconvnet', 28, 8, MODES, xla_flags=CPU_XLA_FLAGS),
      RowConfig('deepconvnet', 28, 8, ('train',), dtype='bfloat16', parallel='pmap',
                devices=2, data='stream'),
  ]


PRESETS = {'cpu': _cpu_preset, 'gpu': _gpu_preset, 'tiny': _tiny_preset}


def preset(name: str) -> list[RowConfig]:
  if name not in PRESETS:
    raise ValueError(f'--preset must be one of {sorted(PRESETS)}, got {name!r}')
  return PRESETS[name]()


def check(row: RowConfig) -> None:
  """Raises ValueError naming the flag whose value `row` cannot run with."""
  def bad(flag, value, allowed):
    raise ValueError(f'--{flag}: {value!r} is not one of {allowed}')

  if row.model not in BENCH_MODELS:
    bad('models', row.model, sorted(BENCH_MODELS))
  for flag, value, allowed in (('dtypes', row.dtype, DTYPES),
                               ('parallel', row.parallel, PARALLEL),
                               ('data', row.data, DATA)):
    if value not in allowed:
      bad(flag, value, allowed)
  for mode in row.modes:
    if mode not in MODES:
      bad('modes', mode, MODES)
  if row.image_size < 8:
    raise ValueError(f'--image_size must be at least 8, got {row.image_size}')
  if row.devices < 1:
    raise ValueError(f'--devices must be at least 1, got {row.devices}')
  if row.batch_size < 1 or row.batch_size % row.devices:
    raise ValueError(f'--batch_sizes: {row.batch_size} is not a positive multiple of the '
                     f'device count {row.devices} (--devices)')


def sweep(rows: list[RowConfig], *, models=None, image_size=None, **fields) -> list[RowConfig]:
  """`rows` with each given field swept over its list of values.

  fields: RowConfig field -> list of values (batch_size, dtype, parallel, devices, data),
    or modes -> the modes every row is timed in. models keeps the rows of those models and
    adds a row at the model's default size for a model no row has; image_size replaces
    every row's size. Duplicates are dropped, order kept.
  """
  if models:
    kept = [row for row in rows if row.model in models]
    covered = {row.model for row in kept}
    for name in models:
      if name not in BENCH_MODELS:
        raise ValueError(f'--models: {name!r} is not one of {sorted(BENCH_MODELS)}')
      if name not in covered:
        kept.append(RowConfig(name, BENCH_MODELS[name].default_size, 8))
    rows = kept
  if image_size:
    rows = [dataclasses.replace(row, image_size=image_size) for row in rows]
  modes = fields.pop('modes', None)
  if modes:
    rows = [dataclasses.replace(row, modes=tuple(modes)) for row in rows]
  names = [name for name, values in fields.items() if values]
  out = []
  for row in rows:
    for values in itertools.product(*(fields[name] for name in names)):
      out.append(dataclasses.replace(row, **dict(zip(names, values))))
  out = list(dict.fromkeys(out))
  for row in out:
    check(row)
  return out
