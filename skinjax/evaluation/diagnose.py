"""Paper 1's segmentation-driven diagnosis (Fig. 17): segment the lesion, crop its bounding
box with a margin, classify the crop."""

import dataclasses

import numpy as np

from skinjax.data.lesion_crops import lesion_box
from skinjax.evaluation.predict import Predictor


@dataclasses.dataclass
class Diagnosis:
  mask: np.ndarray  # bool[H, W]
  box: tuple[int, int, int, int] | None  # (top, left, bottom, right), bottom/right exclusive
  probabilities: dict[str, float]

  @property
  def predicted(self) -> str:
    return max(self.probabilities, key=self.probabilities.get)

  def to_json(self) -> dict:
    return {'lesion_found': self.box is not None,
            'lesion_fraction': float(self.mask.mean()),
            'crop_box': None if self.box is None else dict(zip(
                ('top', 'left', 'bottom', 'right'), map(int, self.box))),
            'predicted_class': self.predicted, 'probabilities': self.probabilities}


def diagnose(image: np.ndarray, segmenter: Predictor, classifier: Predictor,
             margin: float = 0.1) -> Diagnosis:
  """Segment, crop the lesion's box (the whole image when no lesion is found), classify."""
  mask = segmenter.mask(image)
  box = lesion_box(mask, margin)
  crop = image if box is None else image[box[0]:box[2], box[1]:box[3]]
  return Diagnosis(mask, box, classifier.probabilities(crop))
