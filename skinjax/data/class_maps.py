"""Declared maps between the datasets' diagnoses, for scoring a classifier trained on one
dataset on another.

A map sends each class of the dataset being scored onto one class of the classifier's
dataset; a classifier is scored on another dataset only where such a map is declared here
(or the class lists are equal). Each map is documented with its reasons, and
`tests/test_class_maps.py` checks it against the images the two datasets share (found by
pixels): a shared image's diagnosis in one must map onto its diagnosis in the other.
"""

HAM10000_CLASSES = ('akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc')

# The ISIC set of paper 2 (isic9, config all9) onto HAM10000's seven. HAM10000's `bkl`
# ("benign keratosis-like lesions") holds solar lentigines, seborrheic keratoses and
# lichen-planus-like keratoses: ISIC's "pigmented benign keratosis" and "seborrheic
# keratosis" both. Its `akiec` holds actinic keratoses and intraepithelial carcinoma
# (Bowen's disease, squamous cell carcinoma in situ): ISIC's "actinic keratosis" and
# "squamous cell carcinoma". The other five are the same diagnosis under two names.
# Checked on the real sets (tests/test_class_maps.py, slow): 1,514 ISIC files are HAM10000
# images; the map agrees with HAM10000's diagnosis for 1,438 of them. The other 76 are
# filed under ISIC "nevus" while HAM10000 diagnoses them akiec: a conflict between the
# two sources, which no map of diagnoses can mend (evaluation scores such an image by its
# ISIC label, mapped, unless the classifier saw it in training and leaves it out).
ISIC9_TO_HAM10000 = {
    'actinic keratosis': 'akiec',
    'basal cell carcinoma': 'bcc',
    'dermatofibroma': 'df',
    'melanoma': 'mel',
    'nevus': 'nv',
    'pigmented benign keratosis': 'bkl',
    'seborrheic keratosis': 'bkl',
    'squamous cell carcinoma': 'akiec',
    'vascular lesion': 'vasc',
}

# PH2's three clinical diagnoses onto HAM10000's seven: common and atypical (Clark,
# dysplastic) nevi are both melanocytic nevi, HAM10000's `nv`.
PH2_TO_HAM10000 = {
    'common_nevus': 'nv',
    'atypical_nevus': 'nv',
    'melanoma': 'mel',
}

DECLARED = {
    ('isic9', 'ham10000'): ISIC9_TO_HAM10000,
    ('ph2', 'ham10000'): PH2_TO_HAM10000,
}


def class_map(source_classes, target_classes) -> dict[str, str] | None:
  """The declared map sending every one of `source_classes` (the dataset scored) onto
  one of `target_classes` (the classifier's), the identity when the lists are equal, or
  None when no declared map covers them."""
  source_classes, target_classes = tuple(source_classes), tuple(target_classes)
  if source_classes == target_classes:
    return {name: name for name in source_classes}
  for table in DECLARED.values():
    if set(source_classes) <= set(table) and set(table.values()) <= set(target_classes):
      return {name: table[name] for name in source_classes}
  return None
