r"""Convert a Keras applications weights file (EfficientNetV2 B0..B3 and the comparison networks:
ResNet50, ResNet50V2, VGG16, InceptionV3, Xception, MobileNet, MobileNetV2, EfficientNetB3)
into an orbax checkpoint.

  python launch/convert_weights.py --keras_weights=efficientnetv2-b3_notop.h5 \
      --model=efficientnetv2_b3 --include_top=false --output=runs/weights/efficientnetv2_b3_notop

Reads .keras, .weights.h5 and legacy .h5 files (the ImageNet files Keras downloads are
legacy .h5). The output directory holds the variables and the config a later
`--init_from` reads with skinjax.convert.keras_efficientnet_v2.load_converted.
"""

import os

from absl import app, flags, logging

import common_flags
import jax_startup
from skinjax.convert import converted_weights, keras_applications, keras_efficientnet_v2

# The registry name of the file's network -> its converter.
CONVERTERS = {
    **{keras_efficientnet_v2.model_name(variant):
       lambda path, top, skip, variant=variant: keras_efficientnet_v2.convert(
           path, variant, top, skip_unexpected=skip)
       for variant in keras_efficientnet_v2.VARIANTS},
    **{model: lambda path, top, skip, model=model: keras_applications.convert(
        path, model, top, skip_unexpected=skip) for model in keras_applications.FAMILIES},
}

FLAGS = flags.FLAGS
flags.DEFINE_string('keras_weights', None, 'Keras .keras, .weights.h5 or .h5 file.')
flags.DEFINE_enum('model', 'efficientnetv2_b3', list(CONVERTERS),
                  "The file's network, by its skinjax registry name.")
flags.DEFINE_bool('include_top', True, 'Convert the 1000-class `predictions` top too.')
flags.DEFINE_bool('skip_unexpected', False,
                  'Leave out layers the model lacks (e.g. a top with --include_top=false) '
                  'instead of failing; they are listed in the config.')
flags.DEFINE_string('output', None, 'Checkpoint directory to create.')
flags.mark_flags_as_required(['keras_weights', 'output'])


def main(argv):
  del argv
  if not os.path.exists(FLAGS.keras_weights):
    common_flags.fail(f'--keras_weights={FLAGS.keras_weights}: no such file')
  occupied = f'--output={FLAGS.output}: exists and is not an empty folder'
  try:
    converted_weights.check_output_free(FLAGS.output)  # before the conversion's minutes
  except FileExistsError:
    common_flags.fail(occupied)
  jax_startup.start()
  try:
    variables, config = CONVERTERS[FLAGS.model](FLAGS.keras_weights, FLAGS.include_top,
                                                FLAGS.skip_unexpected)
  except keras_efficientnet_v2.ConversionError as error:
    common_flags.fail(str(error))
  except OSError as error:  # e.g. a truncated HDF5 file
    common_flags.fail(f'--keras_weights={FLAGS.keras_weights}: cannot be read ({error})')
  try:
    converted_weights.save_converted(FLAGS.output, variables, config)
  except FileExistsError:  # filled by another process since the check above
    common_flags.fail(occupied)
  except OSError as error:
    common_flags.fail(f'--output={FLAGS.output}: cannot be written ({error})')
  report = config['report']
  logging.info('converted %d layers (%d arrays) of %s into %s', report['converted_layers'],
               report['converted_arrays'], config['model'], FLAGS.output)
  for line in report['skipped']:
    logging.warning('skipped: %s', line)
  print(f"{config['model']}: {report['converted_arrays']} arrays -> {FLAGS.output}")


if __name__ == '__main__':
  app.run(main)
