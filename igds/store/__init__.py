"""``ActivationStore``: the one class that owns the DuckDB file and every query on its bulk tables.

Process model: DuckDB lets one process hold a read-write handle, and while it does no other
process can open the file at all. So nobody keeps a connection open: every call opens, works and
closes (``connect()``), retrying briefly when another process holds the lock. The dashboard, the CLI
and background job processes (extraction, interventions, selection, fine-tuning) all write this way,
interleaving short transactions instead of blocking each other; a killed job loses only its
unfinished transaction. Bulk rows always arrive as Arrow tables; every query is parameterized.

The class is assembled from one mixin per group of tables (``store/<group>.py``); stage modules call
its methods and never spell out SQL on the bulk tables (``tests/unit/test_architecture.py``).
"""

from igds.store.activations import ActivationQueries
from igds.store.base import StoreBase, StoreError
from igds.store.catalog import CatalogQueries
from igds.store.checks import CheckQueries
from igds.store.contexts import ContextQueries
from igds.store.effects import EffectQueries
from igds.store.experiments import ExperimentQueries
from igds.store.lens import LensQueries
from igds.store.pools import PoolQueries
from igds.store.recall import RecallQueries
from igds.store.results import ResultQueries
from igds.store.selections import SelectionQueries
from igds.store.vetting import VettingQueries

__all__ = ["ActivationStore", "StoreError"]


class ActivationStore(StoreBase, ActivationQueries, PoolQueries, RecallQueries, EffectQueries, SelectionQueries,
                      ResultQueries, ExperimentQueries, ContextQueries, CatalogQueries, VettingQueries, LensQueries,
                      CheckQueries):
    """Owner of the DuckDB activation store at ``path`` (default ``cache/igds.duckdb``).

    Args:
        path: database file; created with the schema on first use.
        lock_timeout: seconds to keep retrying while another process holds the file lock.
        shards: where a new store keeps its activation shards (folder or ``s3://``/``gs://`` URI; default
            ``IGDS_SHARDS``, else ``shards/`` next to the file); see :mod:`igds.store.shards`.
    """

    def __init__(self, path=None, lock_timeout: float = 60.0, shards=None):
        super().__init__(path, lock_timeout, shards)
        self.register_tasks()  # workspace tasks are known to every process that opens the store
