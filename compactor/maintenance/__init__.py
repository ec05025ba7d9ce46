"""Long-lived deployments: age-tiered archives, retention, health checks, maintenance.

``Maintenance(cfg).run()`` rotates and gzips ledger segments, moves sessions through the
age tiers (full -> key points -> brief summary -> metadata only) into JSON archives under
``archive/YYYY/MM/``, applies retention rules (none by default), repairs torn tails and
vacuums empty files, crash-safely (journal + backups, rollback on error). ``check_health``
measures and raises alerts. See ``docs/maintenance.md``.

The CLI wiring lives in ``compactor.maintenance._cli.add_maintenance_commands``.
"""

from compactor.maintenance._archive import ArchiveError, Entry, entries, find
from compactor.maintenance._config import (
    HealthConfig,
    ImportanceConfig,
    MaintenanceConfig,
    RetentionConfig,
    TierConfig,
    load_config,
    parse_config,
)
from compactor.maintenance._health import HealthReport, check_health
from compactor.maintenance._maintain import (
    TASKS,
    Action,
    Maintenance,
    MaintenanceBusy,
    RunReport,
    archive_now,
    mark,
    restore_to_store,
)
from compactor.maintenance._profile import Importance, Profile, Tier, due_tier, importance, profile

__all__ = [
    "Action",
    "ArchiveError",
    "Entry",
    "HealthConfig",
    "HealthReport",
    "Importance",
    "ImportanceConfig",
    "Maintenance",
    "MaintenanceBusy",
    "MaintenanceConfig",
    "Profile",
    "RetentionConfig",
    "RunReport",
    "TASKS",
    "Tier",
    "TierConfig",
    "archive_now",
    "check_health",
    "due_tier",
    "entries",
    "find",
    "importance",
    "load_config",
    "mark",
    "parse_config",
    "profile",
    "restore_to_store",
]
