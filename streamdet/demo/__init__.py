"""``streamdet demo``: the whole streaming service, offline, on clips shipped in the package.

    from streamdet.demo import DemoOptions, run_demo
    await run_demo(DemoOptions(out_dir=Path("streamdet-demo")), stop=asyncio.Event())

``samples.py``: the bundled clips (``samples/``, licences in ``samples/ATTRIBUTION.md``);
``runner.py``: service in-process, clips streamed in real time, events printed as they arrive;
``report.py``: report.json, report.md and a score-timeline PNG per stream.
"""

from streamdet.demo.runner import DemoOptions, run_demo
from streamdet.demo.samples import SAMPLES, DemoSample

__all__ = ["SAMPLES", "DemoOptions", "DemoSample", "run_demo"]
