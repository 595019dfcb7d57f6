"""Paper 2 (EfficientSkinCaSV2B3): EfficientNetV2-B3 + its head on the 9-class ISIC set.

Two phases in one launch, each checkpointed under workdir/phases/<name>:
  frozen    the ImageNet backbone frozen in inference mode (BatchNorm statistics too);
            only the head trains, Adam 1e-3;
  finetune  the whole network trains at a hundredth of that rate, Adam 1e-5.
Start from Keras ImageNet weights converted with launch/convert_weights.py:
  --config.init_from=/path/to/converted  (without it the backbone trains from scratch,
  and the log says so).
Scenarios: --config.dataset_config=all9 | benign_malignant | benign6 | malignant3.
Table I's comparison networks train the same way under the same head:
--config.model=resnet50_skin | resnet50v2_skin | mobilenet_skin | mobilenetv2_skin |
efficientnet_b3_skin (their HAM10000 starts: efficientnetv2_b3_ham10000.py with the same
--config.model).
The paper names no epoch counts or batch size; 10 + 10 epochs at batch 32 are ours.
Images enter at 0..255: the B variants rescale and normalise inside the model, as
Keras' include_preprocessing does.
"""

from skinjax.train import spec


def get_config():
  config = spec.base_config()
  config.model = 'efficientnetv2_b3_skin'
  config.task = 'classification'
  config.dataset = 'isic9'
  config.dataset_config = 'all9'
  config.image_size = 300
  config.augment = 'paper2_classification'
  config.normalization.mean = (0.0, 0.0, 0.0)
  config.normalization.std = (1.0, 1.0, 1.0)
  config.batch_size = 32
  config.eval_batch_size = 64
  config.phases = [
      spec.phase('frozen', epochs=10, learning_rate=1e-3, train_backbone=False),
      spec.phase('finetune', epochs=10, learning_rate=1e-5, train_backbone=True),
  ]
  config.best_metric = 'accuracy'
  return config
