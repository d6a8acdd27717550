"""``streamdet bench``: how fast streamdet scores, measured rather than assumed (docs/benchmarks.md).

Modules, one job each:

- ``machine``     what the numbers were measured on (CPU model, cores, load average), load waiting;
- ``stats``       medians, percentiles, timing of repeated calls;
- ``models``      CMs with random weights of the real shapes (XLS-R 300M, LCNN, AASIST), in memory;
- ``model_only``  a scorer's windows/s per backend, thread count and batch size, without the service;
- ``reference``   the authors' way of scoring against streamdet's scorer, same weights, same process;
- ``server``      start ``streamdet serve`` (or reach one), its CPU, memory and /metrics;
- ``load``        N concurrent real-time streams through the service (ZeroMQ or WHIP), end to end;
- ``sweep``       grows N until a service-level objective fails, reports the largest N that met it;
- ``report``      console tables, JSON files and the sweep plot (matplotlib, Agg);
- ``runs``        the command's three modes, from parsed arguments to reports.

Nothing here imports ``offline``: exporting ONNX engines of random CMs is left to
``benchmarks/model_backends.py``, which may.
"""
