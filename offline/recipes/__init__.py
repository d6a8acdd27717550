"""Data recipes: documented, repeatable ways to build extra evaluation and training material.

- :mod:`offline.recipes.asterisk` — real telephone speech: the Asterisk prompt sets packaged by Debian.
- :mod:`offline.recipes.tts_spoofs` — classic synthetic speech (espeak-ng, flite, festival) as spoofs.
- :mod:`offline.recipes.field` — the field list: every clip of field-data and of the sets above with its
  source or system (what ``offline crossval`` holds out).

Both write list files (``path label`` lines, paths relative to the list) that
:func:`offline.datasets.list_file` reads, each with a ``.tsv`` beside it holding what a list cannot
carry (speaker, language, system, text, duration).
"""
