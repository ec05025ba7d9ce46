"""Maintenance configuration: TOML (``tomllib``), validated, with every default embedded.

The settings are the ``[maintenance]`` table of ``compactor.toml``, read by the one loader
(``compactor._config``), which also checks the file's other tables; every key inside it is
checked here. An unknown key or a bad value raises :class:`compactor._errors.ConfigError`
whose message is one line ``FILE: maintenance.tiers.full_days: problem; fix: ...``, whose
``field`` is the dotted key and whose ``source`` is the file. ``store`` and ``ledger``
default to ``[store] root`` and ``[ledger] path`` of the same file (or
``$COMPACTOR_HOME`` / ``$COMPACTOR_LEDGER``).

Defaults and where they come from:

* tiers (our spec, issue 7): 0-7 days full; 7-30 days key points (about 70 % of the
  original tokens); 30-90 days brief summary (about 40 %); 90+ days metadata only.
* alerts (our spec, issue 7): no compaction for 2+ days, a ledger over 50 MB, a
  compaction ratio under 50 %, a failed health check.
* importance weights, saturation points, threshold and the age factor: our choice (see
  ``docs/maintenance.md``), meant to be tuned per deployment.
* retention: off. Nothing is deleted unless a rule is set here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from compactor._config import CONFIG_ENV  # noqa: F401 (the variable naming the file)
from compactor._config import config_error, did_you_mean
from compactor._errors import ConfigError

LEVELS = ("warning", "critical")


@dataclass(frozen=True)
class TierConfig:
    """Age tiers (days since a session's last activity) and the token share each keeps.

    Attributes:
        full_days: sessions younger than this stay complete in the live store (days).
        key_points_days: up to this age the archive keeps key points (days).
        brief_days: up to this age it keeps a brief summary; older: metadata only (days).
        key_points_share: share of the session's tokens the key points may take (0..1].
        brief_share: share of the session's tokens the brief summary may take (0..1].
    """

    full_days: float = 7.0
    key_points_days: float = 30.0
    brief_days: float = 90.0
    key_points_share: float = 0.70
    brief_share: float = 0.40


@dataclass(frozen=True)
class ImportanceConfig:
    """The importance score: ``1.0`` for a user-marked session, else the weighted sum of
    four signals, each ``min(1, value / saturation)``. A session is *important* when its
    score reaches ``threshold``; an important session ages ``age_factor`` times slower
    through the tiers (with the defaults it stays full for 21 days, not 7).

    Attributes:
        threshold: score from which a session counts as important (0..1].
        age_factor: how many times slower important sessions move through tiers (>= 1).
        marked: session id patterns (``fnmatch``) treated as user-marked important, in
            addition to sessions with an ``IMPORTANT`` file in their folder.
        length_tokens: tokens at which the length signal saturates.
        turns: back-and-forth turns (a user message answered by the assistant) at
            which that signal saturates.
        errors: failed tool calls / error results at which that signal saturates.
        tool_calls: tool calls at which that signal saturates.
        weight_length, weight_turns, weight_errors, weight_tools: signal weights (>= 0).
    """

    threshold: float = 0.6
    age_factor: float = 3.0
    marked: tuple[str, ...] = ()
    length_tokens: int = 20_000
    turns: int = 20
    errors: int = 3
    tool_calls: int = 20
    weight_length: float = 0.25
    weight_turns: float = 0.25
    weight_errors: float = 0.25
    weight_tools: float = 0.25


@dataclass(frozen=True)
class RetentionConfig:
    """Deletion rules; all off by default (``None``): nothing is ever deleted unless set.

    Attributes:
        keep_days: delete archived sessions older than this (days), except important
            ones when ``keep_important``.
        keep_important: never delete an important session (the "keep important
            forever" rule).
        delete_metadata_only_after_days: delete sessions already in the metadata-only
            tier once older than this (days), except important ones when ``keep_important``.
    """

    keep_days: float | None = None
    keep_important: bool = True
    delete_metadata_only_after_days: float | None = None


@dataclass(frozen=True)
class HealthConfig:
    """Alert conditions of ``compactor health`` (our spec) and the level each raises.

    Attributes:
        no_compaction_days: alert when the last compaction is older than this (days).
        ledger_max_mb: alert when the ledger's files take more than this (MB = 10^6 bytes).
        min_compaction_ratio: alert when the compaction ratio over the last
            ``ratio_window_days`` is under this (0..1; 0.5 = 50 % of tokens removed).
        ratio_window_days: the window the ratio is computed over (days).
        no_compaction_level, ledger_size_level, compaction_ratio_level,
        failed_check_level: ``"warning"`` (exit 1) or ``"critical"`` (exit 2).
    """

    no_compaction_days: float = 2.0
    ledger_max_mb: float = 50.0
    min_compaction_ratio: float = 0.5
    ratio_window_days: float = 7.0
    no_compaction_level: str = "warning"
    ledger_size_level: str = "warning"
    compaction_ratio_level: str = "warning"
    failed_check_level: str = "critical"


@dataclass(frozen=True)
class MaintenanceConfig:
    """Everything ``compactor health|maintain|schedule|archive`` needs.

    Attributes:
        store: the session store: a folder (``FileSessionStore``; default
            ``$COMPACTOR_HOME`` or ``./compactor-data``) or a ``postgresql://`` URL (a
            ``PostgresStore``; kept as the string).
        ledger: the ledger's active segment; default ``$COMPACTOR_LEDGER`` or
            ``./compactor-ledger/ledger.jsonl``.
        archive: the JSON archive root; default ``<store>/archive`` (a folder store
            only: with a URL it must be set).
        counter: ``"heuristic"`` (default: tier shares are ratios of one session's own
            tokens, where chars/3.6 is close enough and ~100x cheaper) or ``"tiktoken"``.
        ledger_rotate_mb: maintenance closes the active ledger segment when it is larger
            than this (MB) or holds records from an earlier UTC day.
        source: the file this came from (``None``: defaults).
    """

    store: Path | str = Path("compactor-data")
    ledger: Path = Path("compactor-ledger/ledger.jsonl")
    archive: Path | None = None
    counter: str = "heuristic"
    ledger_rotate_mb: float = 64.0
    tiers: TierConfig = field(default_factory=TierConfig)
    importance: ImportanceConfig = field(default_factory=ImportanceConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    source: str | None = None

    @property
    def store_url(self) -> str | None:
        """The store's ``postgresql://`` URL, or None for a folder store."""
        return self.store if isinstance(self.store, str) else None

    @property
    def store_name(self) -> str:
        """The store for messages: its folder, or its URL without the password."""
        if self.store_url is None:
            return str(self.store)
        try:
            from compactor._pgstore import display_url
        except ImportError:         # no postgres extra: show no credentials at all
            scheme, _, rest = self.store_url.partition("://")
            return f"{scheme}://{rest.rpartition('@')[2]}"
        return display_url(self.store_url)

    @property
    def archive_root(self) -> Path:
        """Where the JSON archives live.

        Raises:
            ConfigError: a URL store and no archive folder set.
        """
        if self.archive is not None:
            return self.archive
        if isinstance(self.store, str):
            raise ConfigError(f"store {self.store_name} is a database; its JSON archive needs "
                              "a folder; fix: pass --archive DIR, or set archive in "
                              "[maintenance]", field="archive")
        return self.store / "archive"

    @property
    def state_dir(self) -> Path:
        """Maintenance's lock, journal, trash and last run: ``<store>/.maintenance`` for
        a folder store, ``<archive>/.maintenance`` for a URL store.

        Raises:
            ConfigError: see :attr:`archive_root`.
        """
        if isinstance(self.store, str):
            return self.archive_root / STATE_DIR
        return self.store / STATE_DIR

    def with_paths(self, *, store: str | None = None, ledger: str | None = None,
                   archive: str | None = None) -> MaintenanceConfig:
        """A copy with command-line paths (relative to the current directory) applied;
        a ``postgresql://`` store URL is kept as it is."""
        return replace(self, store=_store_spec(store) if store else self.store,
                       ledger=Path(ledger) if ledger else self.ledger,
                       archive=Path(archive) if archive else self.archive)


#: Folder holding maintenance's lock, journal, trash and status (see ``state_dir``).
STATE_DIR = ".maintenance"


def _store_spec(spec: str) -> Path | str:
    """A ``postgresql://`` URL as it is, anything else as a folder path."""
    from compactor._stores import is_store_url

    return spec if is_store_url(spec) else Path(spec)


# --------------------------------------------------------------------------- validation

_SECTIONS: dict[str, type] = {"tiers": TierConfig, "importance": ImportanceConfig,
                              "retention": RetentionConfig, "health": HealthConfig}


def _fail(key: str, msg: str, fix: str, source: str | None) -> ConfigError:
    return config_error(source, key, msg, fix)


def _number(key: str, v: Any, source: str | None, *, lo: float = 0.0, hi: float = math.inf,
            lo_open: bool = False, integer: bool = False) -> float | int:
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok_type or (isinstance(v, float) and not math.isfinite(v)):
        raise _fail(key, f"expected {kind}, got {v!r}", f"write {key.rsplit('.', 1)[-1]} = "
                    f"<{kind}>", source)
    if v < lo or v > hi or (lo_open and v == lo):
        rng = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi != math.inf else "")
        raise _fail(key, f"must be {rng}, got {v!r}", f"use a value {rng}", source)
    return v


def _check_field(section: str, name: str, v: Any, source: str | None) -> Any:
    key = f"maintenance.{section}.{name}" if section else f"maintenance.{name}"
    if name in ("store", "ledger", "archive"):
        if not isinstance(v, str) or not v:
            raise _fail(key, f"expected a path string, got {v!r}", f'write {name} = "path"',
                        source)
        if name == "store" and isinstance(_store_spec(v), str):
            return v           # a postgresql:// URL
        p = Path(v).expanduser()
        return p if p.is_absolute() or not source else Path(source).parent / p
    if name == "counter":
        if v not in ("heuristic", "tiktoken"):
            raise _fail(key, f"unknown counter {v!r}", 'use "heuristic" or "tiktoken"', source)
        return v
    if name.endswith("_level"):
        if v not in LEVELS:
            raise _fail(key, f"unknown level {v!r}", 'use "warning" or "critical"', source)
        return v
    if name == "marked":
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise _fail(key, f"expected a list of session id patterns, got {v!r}",
                        'write marked = ["vip-*"]', source)
        return tuple(v)
    if name == "keep_important":
        if not isinstance(v, bool):
            raise _fail(key, f"expected true or false, got {v!r}", "write true or false", source)
        return v
    if name.endswith("_share") or name in ("threshold", "min_compaction_ratio"):
        return float(_number(key, v, source, lo=0.0, hi=1.0, lo_open=name.endswith("_share")))
    if name == "age_factor":
        return float(_number(key, v, source, lo=1.0))
    if name.startswith("weight_"):
        return float(_number(key, v, source))
    if name in ("length_tokens", "turns", "errors", "tool_calls"):
        return int(_number(key, v, source, lo=1, integer=True))
    return float(_number(key, v, source, lo=0.0, lo_open=True))  # days, MB


def parse_config(data: Mapping[str, Any], source: str | None = None) -> MaintenanceConfig:
    """Build a :class:`MaintenanceConfig` from a parsed TOML document.

    Raises:
        ConfigError: an unknown key, a value of the wrong type or out of range, or tier
            ages that do not increase; ``field`` is the dotted key.
    """
    base = MaintenanceConfig()
    raw = data.get("maintenance", {})
    if not isinstance(raw, Mapping):
        raise _fail("maintenance", "expected a table", "write [maintenance] above its keys",
                    source)
    top: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    scalar_names = {f.name for f in fields(MaintenanceConfig)} - set(_SECTIONS) - {"source"}
    for k, v in raw.items():
        if k in _SECTIONS:
            if not isinstance(v, Mapping):
                raise _fail(f"maintenance.{k}", "expected a table", f"write [maintenance.{k}]",
                            source)
            cls = _SECTIONS[k]
            known = {f.name for f in fields(cls)}
            vals = {}
            for name, val in v.items():
                if name not in known:
                    raise _fail(f"maintenance.{k}.{name}", "unknown key",
                                f"{did_you_mean(name, known)}remove it or use one of: "
                                f"{', '.join(sorted(known))}", source)
                vals[name] = _check_field(k, name, val, source)
            sections[k] = cls(**vals)
        elif k in scalar_names:
            top[k] = _check_field("", k, v, source)
        else:
            known = sorted(scalar_names | set(_SECTIONS))
            raise _fail(f"maintenance.{k}", "unknown key",
                        f"{did_you_mean(k, known)}remove it or use one of: "
                        f"{', '.join(known)}", source)
    cfg = replace(base, **top, **sections, source=source)
    t = cfg.tiers
    if not t.full_days < t.key_points_days < t.brief_days:
        raise _fail("maintenance.tiers", f"tier ages must increase: full_days ({t.full_days:g}) "
                    f"< key_points_days ({t.key_points_days:g}) < brief_days "
                    f"({t.brief_days:g})", "reorder the three ages", source)
    if t.brief_share > t.key_points_share:
        raise _fail("maintenance.tiers.brief_share", f"{t.brief_share:g} is larger than "
                    f"key_points_share ({t.key_points_share:g})",
                    "make the brief summary the smaller form", source)
    r = cfg.retention
    if r.keep_days is not None and r.keep_days <= t.full_days:
        raise _fail("maintenance.retention.keep_days", f"{r.keep_days:g} days would delete "
                    f"sessions still in the full tier (full_days = {t.full_days:g})",
                    "use a value larger than tiers.full_days", source)
    return cfg


def load_config(path: str | os.PathLike[str] | None = None) -> MaintenanceConfig:
    """The ``[maintenance]`` settings of ``compactor.toml``, read through the one loader
    (:func:`compactor._config.load_config`): the file ``path``, else ``$COMPACTOR_CONFIG``,
    else ``./compactor.toml`` when it exists, else the defaults. The store is
    ``[maintenance] store``, else ``[store] root`` / ``$COMPACTOR_HOME``, else
    ``./compactor-data``; the ledger ``[maintenance] ledger``, else ``[ledger] path`` /
    ``$COMPACTOR_LEDGER``, else ``./compactor-ledger/ledger.jsonl``. Relative paths inside
    a file are relative to it.

    Raises:
        ConfigError: the file is missing, unreadable or not TOML (``field="config"``), or
            any of its tables fails validation (:func:`parse_config` for this one).
    """
    from compactor._config import load_config as load_all

    try:
        return load_all(path).maintenance
    except ConfigError as e:
        if e.field == "(file)":
            e.field = "config"  # this loader's name for the file itself, kept for callers
        raise


#: The defaults as a TOML document (printed by ``compactor maintain --print-config``).
DEFAULT_TOML = """\
[maintenance]
# store = "compactor-data"                   # store folder or postgresql:// URL ($COMPACTOR_HOME)
# ledger = "compactor-ledger/ledger.jsonl"   # ledger active segment ($COMPACTOR_LEDGER)
# archive = "compactor-data/archive"         # JSON archives (default <store>/archive)
counter = "heuristic"
ledger_rotate_mb = 64

[maintenance.tiers]          # days since last activity (our spec)
full_days = 7
key_points_days = 30
brief_days = 90
key_points_share = 0.70
brief_share = 0.40

[maintenance.importance]     # our choice; tune per deployment
threshold = 0.6
age_factor = 3.0
marked = []
length_tokens = 20000
turns = 20
errors = 3
tool_calls = 20
weight_length = 0.25
weight_turns = 0.25
weight_errors = 0.25
weight_tools = 0.25

[maintenance.retention]      # off unless set: nothing is deleted by default
# keep_days = 365
keep_important = true
# delete_metadata_only_after_days = 730

[maintenance.health]         # alert conditions (our spec)
no_compaction_days = 2
ledger_max_mb = 50
min_compaction_ratio = 0.5
ratio_window_days = 7
no_compaction_level = "warning"
ledger_size_level = "warning"
compaction_ratio_level = "warning"
failed_check_level = "critical"
"""
