"""The maintenance rotate task closes the ledger segment it reads (no leaked handle)."""

from __future__ import annotations

import gc
import warnings
from datetime import timedelta

from fleet import NOW, write_ledger
from compactor.maintenance import Maintenance, MaintenanceConfig


def test_rotate_closes_the_segment_it_reads(tmp_path):
    """Rotation reads the active segment's first line in a with-block: no file handle is
    left for the garbage collector (no ResourceWarning)."""
    ledger = tmp_path / "ledger" / "ledger.jsonl"
    write_ledger(ledger, last=NOW - timedelta(hours=1), days=1)
    m = Maintenance(MaintenanceConfig(store=tmp_path / "store", ledger=ledger),
                    now=NOW + timedelta(days=1))
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always", ResourceWarning)
        rep = m.run(("rotate",))
        gc.collect()
    assert rep.status == "ok" and "rotate_segment" in rep.counts()
    leaks = [w for w in got if issubclass(w.category, ResourceWarning) and "ledger" in
             str(w.message)]
    assert not leaks, [str(w.message) for w in leaks]
