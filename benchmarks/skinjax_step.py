r"""Worker: times skinjax's train and eval steps for one configuration; prints ROW lines.

  python benchmarks/skinjax_step.py --model=efficientnetv2_b3_skin --image_size=300 \
      --batch_size=8 --modes=train

Run by benchmarks/throughput.py, one process per configuration (benchmarks/protocol.py).
The steps are the trainer's own: skinjax.train.parallel's pmap or jit wrapper around
skinjax.train.steps, with Keras' Adam (and paper 2's transfer optimiser for the
classifier, backbone trained). Images are random; with --data=device or stream they go
through skinjax.data.pipeline with the paper's augmentation.
"""

import itertools
import os
import platform
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import protocol
import suite
from skinjax import augment
from skinjax.data import arrays as arrays_lib, pipeline
from skinjax.models import create_model, depthwise
from skinjax.train import parallel as parallel_lib, steps
from skinjax.train.state import create_train_state, keras_adam
from skinjax.train.tasks import ClassificationTask, SegmentationTask
from skinjax.train.transfer import transfer_optimizer

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'deepconvnet', 'Name in benchmarks/suite.py BENCH_MODELS.')
flags.DEFINE_integer('image_size', 28, 'Image side.')
flags.DEFINE_integer('batch_size', 64, 'Global batch size.')
flags.DEFINE_list('modes', ['train'], 'train and/or eval.')
flags.DEFINE_enum('dtype', 'float32', suite.DTYPES, 'Compute dtype (parameters stay float32).')
flags.DEFINE_enum('parallel', 'jit', suite.PARALLEL, 'Data-parallel wrapper.')
flags.DEFINE_integer('devices', 1, 'Devices to run on (on the CPU, virtual devices).')
flags.DEFINE_enum('data', 'step', suite.DATA, 'Where batches come from (suite.DATA).')
flags.DEFINE_enum('depthwise', None, depthwise.IMPLEMENTATIONS,
                  'Force a depthwise implementation (default: per backend).')
flags.DEFINE_integer('windows', 5, 'Timed windows.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps after the first.')
flags.DEFINE_float('min_window_s', 0.5, 'Shortest timed window, in seconds.')

# Seconds spent tracing, lowering and compiling, as JAX reports them.
_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                   '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')


def _task(spec):
  if spec.task == 'classification':
    return ClassificationTask(spec.num_classes)
  return SegmentationTask('jaccard')


def _model(spec, name, dtype):
  kwargs = {'dtype': dtype}
  if spec.task == 'classification':
    kwargs['num_classes'] = spec.num_classes
  return create_model(name, **kwargs)


def _host_batch(spec, batch_size, size, rng):
  """Random float images (already normalised: the step alone) and targets."""
  batch = {'image': rng.uniform(0, 255 if not spec.scale_inputs else 1,
                                (batch_size, size, size, 3)).astype(np.float32)}
  if spec.task == 'classification':
    batch['label'] = rng.integers(0, spec.num_classes, batch_size).astype(np.int32)
  else:
    batch['mask'] = rng.integers(0, 2, (batch_size, size, size, 1)).astype(np.uint8)
  return batch


def _split(spec, num_examples, size, rng):
  """A random uint8 split, as the data pipeline holds a real one."""
  masks = (rng.integers(0, 2, (num_examples, size, size, 1)).astype(np.uint8)
           if spec.task == 'segmentation' else None)
  return arrays_lib.SplitArrays(
      images=rng.integers(0, 256, (num_examples, size, size, 3)).astype(np.uint8),
      labels=rng.integers(0, max(spec.num_classes, 2), num_examples).astype(np.int32),
      image_ids=np.array([str(i) for i in range(num_examples)]), masks=masks)


def _flops_per_image(spec, model, task, state, host_batch, mode):
  """XLA's count for the step alone on one device, with the depthwise convolution as a
  convolution, so every backend reports the model's FLOPs, not its implementation's."""
  fn = steps.train_step if mode == 'train' else steps.eval_step
  step = jax.jit(lambda *args: fn(*args, model=model, task=task))
  args = (state, task.empty_metrics(), host_batch)
  if mode == 'train':
    args += (jax.random.key(0),)
  with depthwise.use_implementation('conv'):
    cost = step.lower(*args).cost_analysis()  # lowered only: nothing runs or compiles
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get('flops')
  return None if flops is None or flops <= 0 else flops / len(host_batch['image'])


def _peak_bytes(devices):
  stats = [device.memory_stats() or {} for device in devices]
  peaks = [s.get('peak_bytes_in_use') for s in stats]
  return max(peaks) if all(p is not None for p in peaks) else None


def measure(mode: str):
  """One row: `mode` ('train' or 'eval') of the configuration in FLAGS."""
  spec = suite.BENCH_MODELS[FLAGS.model]
  devices = jax.local_devices()
  if FLAGS.devices > len(devices):
    raise ValueError(f'--devices={FLAGS.devices} but only {len(devices)} '
                     f'{devices[0].platform} devices are present')
  devices = devices[:FLAGS.devices]
  parallel_lib.check_batch_size(FLAGS.batch_size, FLAGS.devices, what='--batch_size')
  dtype = jnp.dtype(FLAGS.dtype)
  model, task = _model(spec, FLAGS.model, dtype), _task(spec)
  size, batch_size = FLAGS.image_size, FLAGS.batch_size
  tx = keras_adam(1e-4)
  if spec.task == 'classification' and hasattr(model, 'train_backbone'):
    tx = transfer_optimizer(model, tx)
  host_state = create_train_state(jax.random.key(0), model, (1, size, size, 3), tx)
  rng = np.random.default_rng(0)
  host_batch = _host_batch(spec, batch_size, size, rng)
  flops = _flops_per_image(spec, model, task, host_state, host_batch, mode)

  preprocess = None
  if FLAGS.data != 'step':
    preprocess = pipeline.Preprocess(
        augment=getattr(augment, spec.augment),
        **({} if spec.scale_inputs else {'mean': (0.0,) * 3, 'std': (1.0,) * 3}))
  parallel = parallel_lib.make_parallel(FLAGS.parallel, model, task, devices,
                                        preprocess=preprocess)
  state = parallel.replicate(host_state)
  metrics = parallel.replicate(task.empty_metrics())
  if FLAGS.data == 'step':
    data, device_batch = None, parallel.shard_batch(host_batch)
    batches = itertools.repeat(device_batch)
  else:
    split = _split(spec, max(4 * batch_size, 64), size, rng)
    feed = pipeline.InputPipeline(split, parallel, placement=FLAGS.data)
    data = feed.data
    indices = np.arange(len(split))
    if mode == 'train':
      batches = itertools.chain.from_iterable(
          feed.batches(pipeline.train_order(indices, batch_size, epoch=epoch, seed=0))
          for epoch in itertools.count())
    else:
      batches = itertools.chain.from_iterable(
          feed.batches(pipeline.train_order(indices, batch_size, epoch=0, seed=0))
          for _ in itertools.count())
  key = jax.random.key(1)
  carry = {'state': state, 'metrics': metrics}

  def train():
    carry['state'], carry['metrics'] = parallel.train_step(
        carry['state'], carry['metrics'], next(batches), key, data)
    return carry['metrics']

  def evaluate():
    # The metrics and the per-example outputs of one pass, as an evaluation runs it.
    carry['metrics'], _ = parallel.eval_step(carry['state'], carry['metrics'], next(batches),
                                             data)
    return carry['metrics']

  compile_seconds = []

  def listener(event, duration, **kwargs):
    if event in _COMPILE_EVENTS:
      compile_seconds.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  timing = protocol.time_steps(train if mode == 'train' else evaluate, jax.block_until_ready,
                               batch_size, windows=FLAGS.windows, warmup=FLAGS.warmup,
                               min_window_s=FLAGS.min_window_s)
  device = devices[0]
  return {
      'framework': 'skinjax', 'variant': FLAGS.parallel,
      'model': FLAGS.model, 'image_size': size, 'batch_size': batch_size, 'mode': mode,
      'dtype': FLAGS.dtype, 'parallel': FLAGS.parallel, 'devices': FLAGS.devices,
      'data': FLAGS.data, 'images_per_s': timing.images_per_s, 'step_s': timing.step_s,
      'first_step_s': timing.first_step_s, 'compile_s': sum(compile_seconds),
      'steps_per_window': timing.steps_per_window,
      'window_images_per_s': timing.window_images_per_s,
      'peak_bytes': _peak_bytes(devices), 'flops_per_image': flops,
      'platform': device.platform, 'device_kind': device.device_kind,
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'depthwise': FLAGS.depthwise or depthwise.auto_implementation(device.platform),
      'versions': {'jax': jax.__version__, 'python': platform.python_version()},
  }


def main(argv):
  del argv
  # Virtual CPU devices for --devices > 1 must exist before JAX starts its CPU backend.
  flag = '--xla_force_host_platform_device_count'
  if FLAGS.devices > 1 and flag not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {flag}={FLAGS.devices}'
  for mode in FLAGS.modes:
    if mode not in suite.MODES:
      raise ValueError(f'--modes: {mode!r} is not one of {suite.MODES}')
  start = time.perf_counter()
  if FLAGS.depthwise:
    with depthwise.use_implementation(FLAGS.depthwise):
      rows = [measure(mode) for mode in FLAGS.modes]
  else:
    rows = [measure(mode) for mode in FLAGS.modes]
  for row in rows:
    row['worker_s'] = time.perf_counter() - start
    protocol.emit(row)


if __name__ == '__main__':
  app.run(main)
