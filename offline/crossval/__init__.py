"""Grouped cross-validation of field CMs: whole sources and whole systems held out, pooled numbers.

- :mod:`~offline.crossval.config` — the config (``configs/field/crossval.toml``);
- :mod:`~offline.crossval.folds` — folds over whole real sources and whole fake systems;
- :mod:`~offline.crossval.embed` — one pass of the CM's frozen trunk, held-out replays through
  ``offline.streaming_eval``;
- :mod:`~offline.crossval.stages` — resumable replay and augmentation stages;
- :mod:`~offline.crossval.head` — the retrained head;
- :mod:`~offline.crossval.folds_run` — per fold: head, threshold, held-out scores;
- :mod:`~offline.crossval.report` — pooled report, per source/system, DET curves;
- :mod:`~offline.crossval.pipeline` — all of it in order, and shipping a CM trained on everything.
"""
