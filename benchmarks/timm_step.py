r"""Worker: times PyTorch timm's counterpart of one model, eager and torch.compile'd.

  python benchmarks/timm_step.py --model=efficientnetv2_b3_skin --image_size=300 \
      --batch_size=8 --modes=train --compile

timm's model (suite.BENCH_MODELS[...].timm, e.g. tf_efficientnetv2_b3) runs headless
under paper 2's head written in torch, channels_last, Adam; on a GPU in bf16 autocast
(AMP), on the CPU in float32. With --compile a second row times torch.compile(model).
When torch or timm cannot be imported, prints one row saying why and exits 0.
"""

import platform
import time

from absl import app, flags

import protocol
import suite

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'efficientnetv2_b3_skin', 'Name in suite.BENCH_MODELS.')
flags.DEFINE_integer('image_size', 300, 'Image side.')
flags.DEFINE_integer('batch_size', 8, 'Batch size.')
flags.DEFINE_list('modes', ['train'], 'train and/or eval.')
flags.DEFINE_bool('compile', True, 'Also time torch.compile(model) (a second row).')
flags.DEFINE_integer('windows', 5, 'Timed windows.')
flags.DEFINE_integer('warmup', 2, 'Untimed steps after the first.')
flags.DEFINE_float('min_window_s', 0.5, 'Shortest timed window, in seconds.')

START = time.perf_counter()


def _row(**fields):
  return {'framework': 'timm', 'model': FLAGS.model, 'image_size': FLAGS.image_size,
          'batch_size': FLAGS.batch_size, 'devices': 1, 'data': 'step', **fields}


def build(torch, timm, name, num_classes):
  """timm backbone (headless, unpooled) under paper 2's head: max pool -> BN -> dropout
  0.15 -> dense 256 ReLU -> BN -> dropout 0.2 -> dense."""
  nn = torch.nn
  backbone = timm.create_model(name, pretrained=False, num_classes=0, global_pool='')
  features = backbone.num_features
  return nn.Sequential(
      backbone, nn.AdaptiveMaxPool2d(1), nn.Flatten(),
      nn.BatchNorm1d(features, eps=1e-3, momentum=0.01), nn.Dropout(0.15),
      nn.Linear(features, 256), nn.ReLU(), nn.BatchNorm1d(256, eps=1e-3, momentum=0.01),
      nn.Dropout(0.2), nn.Linear(256, num_classes))


def main(argv):
  del argv
  try:
    import torch
    import timm
  except Exception as error:  # any import failure, e.g. torchvision beside a CPU torch
    protocol.emit(_row(skipped=f'torch/timm not importable: {type(error).__name__}: {error}'))
    return
  if FLAGS.model not in suite.BENCH_MODELS or not suite.BENCH_MODELS[FLAGS.model].timm:
    raise ValueError(f'--model: {FLAGS.model!r} has no timm counterpart in suite.BENCH_MODELS')
  spec = suite.BENCH_MODELS[FLAGS.model]
  gpu = torch.cuda.is_available()
  device = torch.device('cuda' if gpu else 'cpu')
  size, batch_size = FLAGS.image_size, FLAGS.batch_size
  images = torch.rand(batch_size, 3, size, size, device=device).contiguous(
      memory_format=torch.channels_last)
  labels = torch.randint(0, spec.num_classes, (batch_size,), device=device)
  eager = build(torch, timm, spec.timm, spec.num_classes).to(device).to(
      memory_format=torch.channels_last)
  optimizer = torch.optim.Adam(eager.parameters(), lr=1e-4, eps=1e-7)
  loss_fn = torch.nn.CrossEntropyLoss()
  autocast = torch.autocast('cuda', dtype=torch.bfloat16, enabled=gpu)

  def sync(out):
    if gpu:
      torch.cuda.synchronize()

  variants = [('eager', eager)]
  if FLAGS.compile:
    variants.append(('compile', torch.compile(eager)))
  for variant, model in variants:
    for mode in FLAGS.modes:
      if mode not in suite.MODES:
        raise ValueError(f'--modes: {mode!r} is not one of {suite.MODES}')

      def train():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
          loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

      @torch.inference_mode()
      def evaluate():
        model.eval()
        with autocast:
          return loss_fn(model(images), labels)

      if gpu:
        torch.cuda.reset_peak_memory_stats()
      timing = protocol.time_steps(train if mode == 'train' else evaluate, sync, batch_size,
                                   windows=FLAGS.windows, warmup=FLAGS.warmup,
                                   min_window_s=FLAGS.min_window_s)
      protocol.emit(_row(
          variant=variant, mode=mode, dtype='bfloat16' if gpu else 'float32',
          images_per_s=timing.images_per_s, step_s=timing.step_s,
          first_step_s=timing.first_step_s, steps_per_window=timing.steps_per_window,
          window_images_per_s=timing.window_images_per_s,
          peak_bytes=torch.cuda.max_memory_allocated() if gpu else None,
          platform='gpu' if gpu else 'cpu', timm_model=spec.timm,
          threads=torch.get_num_threads(),
          versions={'torch': torch.__version__, 'timm': timm.__version__,
                    'python': platform.python_version()},
          worker_s=time.perf_counter() - START))


if __name__ == '__main__':
  app.run(main)
