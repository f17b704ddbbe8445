"""One module per ``mgdepth`` verb (file name = verb, ``_`` becomes ``-``); see :mod:`mgdepth_core.cli`."""
