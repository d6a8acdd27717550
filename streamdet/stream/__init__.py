"""The stream core: pure, synchronous code that turns one stream of samples into verdicts and alerts.

    policy.py      StreamPolicy: the operating point (the verdict, the threshold and where it came
                   from, window geometry, the k-of-n / m alert rule), shared by service and offline
    edge.py        mono mixdown and streaming resampling to 16 kHz
    ring.py        a fixed-capacity ring of samples
    windower.py    cuts a sample stream into overlapping windows (geometry from policy.py)
    alerts.py      the k-of-n / m-below alert state machine
    session.py     one stream's state (sequence check, edge, windows, alert state)

No I/O, no event loop, no imports from ``streamdet.service``: the service and ``offline`` both
build on this package, which is what makes a replayed stream behave as a live one.
Nothing is imported here, so ``streamdet.manifest`` can use ``policy`` without a cycle.
"""
