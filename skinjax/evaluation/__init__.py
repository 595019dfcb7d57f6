"""Evaluation: a trained run, restored from its workdir alone, scored and used.

  restore.py   the run at a checkpoint: spec, model, task, weights (no training state needed)
  targets.py   what to score: a split of the run's own dataset, or of another dataset of the
               same task (classes mapped by a declared table; images the run saw left out)
  evaluate.py  one pass over the target -> metrics and per-example outputs together -> report
  predict.py   the run on a user's image files
  diagnose.py  paper 1's segment -> crop -> classify, with two runs
"""
