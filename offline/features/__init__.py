"""Feature caches: frozen front-end outputs computed once per dataset and read back by training.

- ``specs``: what a cache is computed from (dataset spec, front-end spec), shared with training configs.
- ``cache``: the on-disk format (index + committed shards) and read access, including the check.
- ``prepare``: computing a cache, resumably, with failures recorded by path.
"""

from offline.features.cache import CheckReport, FeatureCache
from offline.features.prepare import PrepareReport, prepare_cache
from offline.features.specs import DatasetSpec, FrontendSpec, cache_dir_for
from streamdet.errors import FeatureCacheError

__all__ = [
    "CheckReport",
    "DatasetSpec",
    "FeatureCache",
    "FeatureCacheError",
    "FrontendSpec",
    "PrepareReport",
    "cache_dir_for",
    "prepare_cache",
]
