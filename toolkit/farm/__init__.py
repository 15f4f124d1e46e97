"""The device farm: a YAML file runs models x variants x devices x delegates x threads.

    from toolkit.farm import load_farm, run_farm, make_executor
    from toolkit.store import open_store
    farm = load_farm("farm.yaml")
    with open_store(farm.store_path) as store:
        summary = run_farm(farm, store, make_executor(farm.config), emit=print)

See docs/farm.md for the file format, the scheduling and fault rules, and the Dask executor.
"""

from __future__ import annotations

from toolkit.farm.config import FarmConfig, LoadedFarm, load_farm
from toolkit.farm.executors import DaskExecutor, InProcessExecutor, make_executor
from toolkit.farm.plan import Job, expand
from toolkit.farm.scheduler import RunSummary, run_farm

__all__ = [
    "DaskExecutor",
    "FarmConfig",
    "InProcessExecutor",
    "Job",
    "LoadedFarm",
    "RunSummary",
    "expand",
    "load_farm",
    "make_executor",
    "run_farm",
]
