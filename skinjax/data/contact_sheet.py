"""PNG contact sheets of duplicate groups: one row per group, its images side by side with
each one's dataset, file, label and split written under it."""

from pathlib import Path

from matplotlib import font_manager
import numpy as np
from PIL import Image, ImageDraw, ImageFont

THUMB = 150  # pixels, the longer side of each image
MAX_PER_ROW = 6
CAPTION_LINES = 4
LINE = 14
MARGIN = 8


def _font(size: int):
  # matplotlib ships DejaVu Sans; PIL's own bitmap font is too small to read.
  return ImageFont.truetype(font_manager.findfont('DejaVu Sans'), size)


def _fit(text: str, font, width: int, *, keep_end: bool = False) -> str:
  """`text` cut with an ellipsis (at the end, or at the front with keep_end) to fit
  `width` pixels."""
  if font.getlength(text) <= width:
    return text
  while text and font.getlength('...' + text) > width:
    text = text[1:] if keep_end else text[:-1]
  return '...' + text if keep_end else text + '...'


def write(audit, groups: list[list[dict]], path, *, title: str, notes: list[str] | None = None):
  """Draws `groups` (each a list of audit members: dataset, key, label, split) into PNG
  `path`; notes: one extra line per group (e.g. the hash distance)."""
  images = {(audit.sets[audit.dataset[k]].name, image.key): image
            for k, image in enumerate(audit.images)}
  font, title_font = _font(11), _font(14)
  cell = THUMB + MARGIN
  caption = CAPTION_LINES * LINE
  width = MARGIN + MAX_PER_ROW * cell
  row_height = THUMB + caption + MARGIN + (LINE if notes else 0)
  sheet = Image.new('RGB', (width, 30 + row_height * len(groups)), 'white')
  draw = ImageDraw.Draw(sheet)
  draw.text((MARGIN, 8), title, fill='black', font=title_font)
  for row, members in enumerate(groups):
    top = 30 + row * row_height
    if notes:
      draw.text((MARGIN, top), notes[row], fill='black', font=font)
      top += LINE
    shown = members[:MAX_PER_ROW]
    for column, member in enumerate(shown):
      left = MARGIN + column * cell
      picture = Image.fromarray(np.asarray(images[(member['dataset'], member['key'])].pixels()))
      picture.thumbnail((THUMB, THUMB), Image.BILINEAR)
      sheet.paste(picture, (left, top))
      folder, _, file = member['key'].rpartition('/')
      lines = [file, f'{member["dataset"]}: {member["label"]}',
               ' '.join(part for part in (member['split'], member['group']) if part), folder]
      for k, text in enumerate(lines):
        draw.text((left, top + THUMB + 2 + k * LINE),
                  _fit(text, font, THUMB, keep_end=k in (0, 3)), fill='black', font=font)
    if len(members) > MAX_PER_ROW:
      draw.text((MARGIN + (MAX_PER_ROW - 1) * cell, top + THUMB + 2 + 3 * LINE),
                f'+{len(members) - MAX_PER_ROW} more', fill='gray', font=font)
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  sheet.save(path)
