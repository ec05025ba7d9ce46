"""One config file, ``compactor.toml``: where it is found, how it is read, what it may hold.

Which file (the first that applies):

1. ``path`` (the command line's ``--config FILE``),
2. ``$COMPACTOR_CONFIG`` (when set and not empty),
3. ``./compactor.toml`` when it exists,
4. the shipped defaults, ``compactor/data/compactor.toml``.

Tables (every one optional): ``[compactor]`` (watermarks, keep rules, summary budget,
overflow policy, counter, window), ``[windows]`` (tier windows, model map, per-model
windows), ``[budgets]`` (budget profiles; ``compactor.budgets``), ``[maintenance]``
(``compactor.maintenance``), ``[store]`` (the session store) and ``[ledger]`` (the JSONL
ledger). A file holding only the budgets tables of the old ``budgets.toml`` layout at top
level (``[settings]``, ``[profiles.NAME]``, ...) is read as ``[budgets]``.

Where each value comes from, later ones winning: the default (in code; the shipped file
says the same), the file, the environment (``$COMPACTOR_HOME`` -> ``store.root``,
``$COMPACTOR_LEDGER`` -> ``ledger.path``, ``$COMPACTOR_BUDGETS`` -> the budgets when no
``path`` is given), the command line (``overrides``, e.g. ``compactor config show --set``).
``store.url`` (a ``postgresql://`` store) and ``store.root`` (a folder) name one store:
the one from the later source wins, both from the same source is an error.

Every problem is a :class:`~compactor.ConfigError` whose message is one line
``FILE: dotted.key: problem; fix: ...``, whose ``field`` is the dotted key (``"(file)"``
when the file cannot be read, ``"line N"`` for a TOML syntax error) and whose ``source`` is
the file (``$VARIABLE`` or ``--set`` for a value from the environment or the command line).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping

from ._errors import ConfigError
from ._plan import PlanConfig
from ._stores import is_store_url
from ._tokens import DEFAULT_MODEL_TIERS, TIER_WINDOWS, Tier, WindowConfig
from .ledger._ledger import DEFAULT_ROTATE_BYTES

if TYPE_CHECKING:  # imported lazily at run time (they import this module)
    from ._compactor import MessageCompactor
    from .budgets._config import BudgetConfig
    from .maintenance._config import MaintenanceConfig

#: The environment variable naming the config file.
CONFIG_ENV = "COMPACTOR_CONFIG"
#: Legacy: a budgets file, used for the budgets when no path is given.
BUDGETS_ENV = "COMPACTOR_BUDGETS"
#: The session store root (``store.root``).
STORE_ENV = "COMPACTOR_HOME"
#: The ledger's active segment (``ledger.path``).
LEDGER_ENV = "COMPACTOR_LEDGER"
#: The file looked for in the current directory.
DEFAULT_NAME = "compactor.toml"
#: The tables a file may hold, in the order ``config show`` prints them.
TABLES = ("compactor", "windows", "budgets", "maintenance", "store", "ledger")
#: The top-level tables of the old budgets file layout (read as ``[budgets]``).
LEGACY_BUDGET_TABLES = ("settings", "alerts", "recommendations", "profiles", "agents")

Source = Literal["default", "file", "env", "flag"]
Origin = Literal["flag", "env", "cwd", "default"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------- errors
def dotted(*parts: str) -> str:
    """A TOML dotted key: ``dotted("windows", "model_tiers", "gpt-4*")`` ->
    ``windows.model_tiers."gpt-4*"`` (parts that are not bare keys are quoted)."""
    return ".".join(p if _BARE_KEY.match(p) else json.dumps(p, ensure_ascii=False)
                    for p in parts if p)


def config_error(source: str | None, key: str, problem: str, fix: str) -> ConfigError:
    """The one error format: ``ConfigError("SOURCE: KEY: problem; fix: FIX")`` with
    ``field=KEY`` and ``source=SOURCE`` (``"<code>"`` when there is no file)."""
    src = source or "<code>"
    return ConfigError(f"{src}: {key}: {problem}; fix: {fix}", field=key, source=src)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the nearest option (``difflib``, cutoff 0.6), else ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


# ---------------------------------------------------------------------------- reading
def read_toml(path: str | os.PathLike[str], *, hint: str = f"--config or ${CONFIG_ENV}"
              ) -> dict[str, Any]:
    """Read a TOML file (``tomllib``).

    Args:
        path: the file.
        hint: how the user names a file, for the fix text.

    Raises:
        ConfigError: the path is empty, missing, a directory or unreadable, the file is not
            UTF-8 (``field="(file)"``), or not valid TOML (``field="line N"``).
    """
    source = os.fspath(path)
    if not source.strip():
        raise config_error(repr(source), "(file)", "the path is empty",
                           f"pass an existing TOML file with {hint}")
    if os.path.isdir(source):
        raise config_error(source, "(file)", "is a directory, not a file",
                           f"pass the TOML file itself with {hint}, e.g. {DEFAULT_NAME}")
    try:
        raw = Path(source).read_bytes()
    except OSError as e:
        raise config_error(source, "(file)", f"cannot read the file ({e.strerror or e})",
                           f"pass an existing, readable TOML file with {hint}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise config_error(source, "(file)", f"not valid TOML: not UTF-8 text (byte "
                           f"0x{raw[e.start]:02x} at offset {e.start})",
                           "save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+)", msg)
        raise config_error(source, f"line {m.group(1) if m else '?'}", f"not valid TOML "
                           f"({msg})", "correct the TOML syntax (quote strings, key = value, "
                           "one [table] header per table)") from None


def shipped_path() -> Path:
    """The shipped defaults, ``compactor/data/compactor.toml``."""
    return Path(str(resources.files("compactor") / "data" / DEFAULT_NAME))


def find_config(path: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> tuple[str | None, Origin]:
    """Which file to read: ``(path, origin)``; ``(None, "default")`` means the shipped
    defaults. ``origin`` is ``"flag"`` (``path`` given, even empty: reading it then fails),
    ``"env"`` (``$COMPACTOR_CONFIG``), ``"cwd"`` (``./compactor.toml``) or ``"default"``."""
    env = os.environ if env is None else env
    if path is not None:
        return os.fspath(path), "flag"
    if env.get(CONFIG_ENV):
        return env[CONFIG_ENV], "env"
    if os.path.exists(DEFAULT_NAME):
        return DEFAULT_NAME, "cwd"
    return None, "default"


# ----------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class Key:
    """One scalar key of ``[compactor]``, ``[windows]``, ``[store]`` or ``[ledger]``.

    ``check(value) -> problem or None``; ``fix`` says what to write; ``default`` is the
    value when nothing sets it (``None``: unset); ``unit`` and ``help`` are documentation.
    """

    table: str
    name: str
    default: Any
    check: Callable[[Any], str | None]
    fix: str
    unit: str = ""
    help: str = ""


def _number(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
            ) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"must be a number, got {_show(v)}"
        if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            hi_s = "inf" if hi == math.inf else f"{hi:g}"
            return f"must be in {left}{lo:g}, {hi_s}{right}, got {v!r}"
        return None
    return check


def _integer(lo: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be a whole number, got {_show(v)}"
        if v < lo:
            return f"must be >= {lo}, got {v}"
        return None
    return check


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {_show(v)}"


def _choice(*options: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v in options:
            return None
        near = did_you_mean(v, options) if isinstance(v, str) else ""
        return f"must be one of {', '.join(repr(o) for o in options)}, got {v!r}" + (
            f" ({near.strip()})" if near else "")
    return check


def _path(v: Any) -> str | None:
    if not isinstance(v, str) or not v.strip():
        return f"must be a non-empty path string, got {_show(v)}"
    return None


def _text(v: Any) -> str | None:
    if not isinstance(v, str) or not v.strip():
        return f"must be a non-empty string, got {_show(v)}"
    return None


def _store_url(v: Any) -> str | None:
    if isinstance(v, str) and is_store_url(v):
        return None
    if isinstance(v, str) and "://" in v:   # another scheme: show it, never its credentials
        got = f"a URL with scheme {v.partition('://')[0]!r}"
    else:
        got = _show(v)
    return f"must be a postgresql:// or postgres:// URL, got {got}"


_P = PlanConfig()
_TIERS = tuple(t.value for t in Tier)

#: Every scalar key of the tables this module validates itself.
KEYS: tuple[Key, ...] = (
    Key("compactor", "high_watermark", _P.high_watermark, _number(0, 1, lo_open=True),
        "write a share of the window in (0, 1], e.g. 0.7", "share of the usable window",
        "compact when the request exceeds this share of the usable window"),
    Key("compactor", "low_watermark", _P.low_watermark, _number(0, 1, lo_open=True,
                                                                hi_open=True),
        "write a share below high_watermark, e.g. 0.4", "share of the usable window",
        "compact down to this share (a target; the floor may be larger)"),
    Key("compactor", "keep_recent", _P.keep_recent, _integer(0),
        "write a whole number of messages >= 0, e.g. 10", "messages",
        "keep at least this many last messages (widened to whole units) when they fit "
        "under the watermarks' midpoint"),
    Key("compactor", "keep_first_user", _P.keep_first_user, _boolean,
        "write true or false", "", "keep the first user message (the task) verbatim"),
    Key("compactor", "max_summary_tokens", _P.max_summary_tokens, _integer(0),
        "write a whole number of tokens >= 0, e.g. 2000", "tokens", "cap of the summary"),
    Key("compactor", "summary_share", _P.summary_share, _number(0, 1),
        "write a share in [0, 1], e.g. 0.75", "share of the low-watermark target",
        "the summary may take at most this share of the low-watermark target"),
    Key("compactor", "overflow", _P.overflow, _choice("raise", "truncate_tool_results"),
        'write overflow = "raise" or "truncate_tool_results"', "",
        "when the floor does not fit: raise ContextOverflowError, or shorten the longest "
        "tool results in it"),
    Key("compactor", "clear_tool_results", _P.clear_tool_results, _boolean,
        "write true or false", "",
        "before summarizing, replace old tool results with a placeholder naming their "
        "archive ordinal and identifiers"),
    Key("compactor", "fill_to_target", _P.fill_to_target, _boolean,
        "write true or false", "",
        "when the summary is shorter than its budget, keep more recent turns verbatim in "
        "the room it left (up to the low watermark)"),
    Key("compactor", "clear_keep_last", _P.clear_keep_last, _integer(0),
        "write a whole number >= 0, e.g. 3", "tool uses",
        "the results of the last this many tool uses are never cleared"),
    Key("compactor", "clear_min_tokens", _P.clear_min_tokens, _integer(0),
        "write a whole number of tokens >= 0, e.g. 100", "tokens",
        "tool results shorter than this are never cleared"),
    Key("compactor", "recall_share", 0.0, _number(0, 0.5),
        "write a share in [0, 0.5], e.g. 0.1 (0: off)", "share of the usable window",
        "question-time recall (with a store): archived spans relevant to the newest user "
        "turn placed next to it"),
    Key("compactor", "counter", "tiktoken", _choice("tiktoken", "heuristic"),
        'write counter = "tiktoken" (exact) or "heuristic" (characters / 3.6)', "",
        "the token counter"),
    Key("compactor", "summarize", True, _boolean, "write true or false", "",
        "false drops the evicted span with no summary (plain truncation)"),
    Key("compactor", "max_concurrency", 4, _integer(1), "write a whole number >= 1, e.g. 4",
        "summaries", "chunk summaries in flight at once"),
    Key("compactor", "reserve_output_tokens", 0, _integer(0),
        "write a whole number of tokens >= 0, e.g. 4096", "tokens",
        "output tokens reserved out of the window when a call passes no max_tokens"),
    Key("compactor", "window", None, _integer(1),
        "write a whole number of tokens >= 1, e.g. 128000 (or remove the key)", "tokens",
        "a fixed context window for every call (unset: the model's or tier's window)"),
    Key("compactor", "max_sessions", 1024, _integer(1), "write a whole number >= 1, e.g. 1024",
        "sessions", "sessions kept in memory (least recently used evicted; with a store "
        "their state reloads on the next call)"),
    Key("compactor", "agent_id", None, _text, 'write agent_id = "my-agent"', "",
        "reported with every ledger event (unset: none)"),
    Key("windows", "default_tier", Tier.GENERAL.value, _choice(*_TIERS),
        f"write one of: {', '.join(_TIERS)}", "", "the tier of models no pattern matches"),
    Key("store", "root", None, _path, 'write root = "compactor-data"', "path",
        "the session store's folder (unset: the compactor archives nothing)"),
    Key("store", "fsync", False, _boolean, "write true or false", "",
        "fsync every archive append (state files are always fsynced)"),
    Key("store", "url", None, _store_url,
        'write url = "postgresql://USER@HOST:PORT/DBNAME" (a folder store goes in root = '
        '"PATH")', "URL",
        "a PostgreSQL session store (docs/postgres.md), instead of a folder"),
    Key("ledger", "path", None, _path, 'write path = "compactor-ledger/ledger.jsonl"', "path",
        "the ledger's active segment (unset: the compactor writes no ledger)"),
    Key("ledger", "fsync", "interval", _choice("interval", "always", "never"),
        'write fsync = "interval", "always" or "never"', "", "when appends are fsynced"),
    Key("ledger", "fsync_interval_s", 1.0, _number(0, math.inf, lo_open=True),
        "write a number of seconds > 0, e.g. 1.0", "seconds",
        "seconds between fsyncs under fsync = \"interval\""),
    Key("ledger", "rotate_bytes", DEFAULT_ROTATE_BYTES, _integer(1),
        "write a whole number of bytes >= 1, e.g. 67108864 (64 MiB)", "bytes",
        "close the active segment past this size"),
    Key("ledger", "rotate_daily", True, _boolean, "write true or false", "",
        "also close the active segment when the UTC day changes"),
    Key("ledger", "redact", False, _boolean, "write true or false", "",
        "replace message text in records by its hash and length"),
    Key("ledger", "lock", True, _boolean, "write true or false", "",
        "take <path>.lock around appends (off only for a single writer)"),
)
_BY_TABLE: dict[str, dict[str, Key]] = {}
for _k in KEYS:
    _BY_TABLE.setdefault(_k.table, {})[_k.name] = _k
#: The sub-tables of ``[windows]`` (name -> what their values are).
WINDOW_TABLES = ("tier_windows", "model_tiers", "model_windows")


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class Setting:
    """One effective value and where it came from.

    Attributes:
        value: the value (``None``: unset).
        source: ``"default"``, ``"file"``, ``"env"`` or ``"flag"``.
        origin: the file, ``$VARIABLE`` or ``--set`` it came from (``""`` for a default).
    """

    value: Any
    source: Source
    origin: str = ""


@dataclass(frozen=True)
class Config:
    """The validated ``compactor.toml``. Build it with :func:`load_config`.

    Attributes:
        path: the file read (``None``: the shipped defaults).
        origin: how the file was found: ``"flag"``, ``"env"``, ``"cwd"`` or ``"default"``.
        settings: every effective value by dotted key (``"compactor.high_watermark"``),
            with its source; what ``compactor config show`` prints.
        plan: the :class:`PlanConfig` from ``[compactor]``.
        windows: the :class:`WindowConfig` from ``[windows]``.
        budgets: the budget profiles (``[budgets]``; the shipped ones when absent).
        maintenance: the maintenance settings (``[maintenance]``, with ``store`` and
            ``ledger`` defaulting to :attr:`store_root` (``[store] url`` or ``root``) and
            ``[ledger] path``).
    """

    path: str | None
    origin: Origin
    settings: Mapping[str, Setting]
    plan: PlanConfig
    windows: WindowConfig
    budgets: BudgetConfig
    maintenance: MaintenanceConfig

    def value(self, key: str) -> Any:
        """The effective value of a dotted key (``KeyError`` if there is no such key)."""
        return self.settings[key].value

    @property
    def store_root(self) -> Path | str | None:
        """The session store: ``[store] url`` as the ``postgresql://`` string, or
        ``[store] root`` as a folder :class:`Path`; when both are set, the one from the
        later source (flag > env > file). ``None``: no store."""
        chosen = _chosen_store(self.settings)
        if chosen is None:
            return None
        key, s = chosen
        return s.value if key == "store.url" else Path(s.value)

    @property
    def store_name(self) -> str | None:
        """:attr:`store_root` for messages: the folder, or the URL without its password
        (``None``: no store)."""
        spec = self.store_root
        if isinstance(spec, str):
            from .maintenance._config import MaintenanceConfig
            return MaintenanceConfig(store=spec).store_name
        return None if spec is None else str(spec)

    @property
    def ledger_path(self) -> Path | None:
        """``[ledger] path`` (``None``: no ledger)."""
        v = self.value("ledger.path")
        return None if v is None else Path(v)

    def compactor_kwargs(self, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """Keyword arguments of ``MessageCompactor(...)`` from this config: ``config``
        (PlanConfig), ``windows``, ``counter``, ``summarize``, ``max_concurrency``,
        ``reserve_output_tokens``, ``window``, ``agent_id``, ``max_sessions``, and ``store``
        / ``sink`` (a ``Ledger``, opened) when :attr:`store_root` / ``[ledger] path`` is
        set. The store is :func:`compactor._stores.open_store`'s: a ``PostgresStore`` for
        ``[store] url`` (its connection pool open: close it with ``store.close()``), a
        ``FileSessionStore`` for ``[store] root`` (the folder created; ``[store] fsync``).
        Names in ``exclude`` are left out (nothing is built for them).

        Raises:
            ConfigError: the tiktoken counter cannot load an encoding; the database cannot
                be reached (``MissingExtraError`` without the postgres extra).
            LedgerError: the ledger cannot be opened.
        """
        skip = set(exclude)
        v = self.value
        out: dict[str, Any] = {
            "config": self.plan, "windows": self.windows, "summarize": v("compactor.summarize"),
            "max_concurrency": v("compactor.max_concurrency"),
            "reserve_output_tokens": v("compactor.reserve_output_tokens"),
            "window": v("compactor.window"), "agent_id": v("compactor.agent_id"),
            "max_sessions": v("compactor.max_sessions"),
            "recall_share": v("compactor.recall_share")}
        out = {k: x for k, x in out.items() if k not in skip}
        if "counter" not in skip:
            from ._tokens import HeuristicCounter, default_counter
            out["counter"] = (HeuristicCounter() if v("compactor.counter") == "heuristic"
                              else default_counter())
        spec = self.store_root
        if "store" not in skip and spec is not None:
            from ._stores import open_store
            out["store"] = (open_store(spec) if isinstance(spec, str)
                            else open_store(spec, fsync=v("store.fsync")))
        if "sink" not in skip and self.ledger_path is not None:
            from .ledger import Ledger
            try:
                out["sink"] = Ledger(self.ledger_path, fsync=v("ledger.fsync"),
                                     fsync_interval_s=v("ledger.fsync_interval_s"),
                                     rotate_bytes=v("ledger.rotate_bytes"),
                                     rotate_daily=v("ledger.rotate_daily"),
                                     redact=v("ledger.redact"), lock=v("ledger.lock"))
            except BaseException:
                _close(out.get("store"))   # the pool this call opened
                raise
        return out


def _close(obj: Any) -> None:
    """``obj.close()`` when it has one (a ledger, a PostgreSQL store's pool)."""
    close = getattr(obj, "close", None)
    if close is not None:
        close()


def compactor_from_config(config: Config | str | os.PathLike[str] | None = None,
                          **overrides: Any) -> MessageCompactor:
    """A :class:`MessageCompactor` built from a config (``None``: :func:`load_config()`;
    a path: ``load_config(path)``). ``overrides`` are ``MessageCompactor`` keyword
    arguments that win over the config (e.g. ``summarizer=``, ``agent_id=``, ``sink=``).

    Raises:
        ConfigError: the config is invalid, or an override is out of range.
    """
    from ._compactor import MessageCompactor

    if not isinstance(config, Config):
        config = load_config(config)
    kwargs = config.compactor_kwargs(exclude=overrides)
    built = (kwargs.get("sink"), kwargs.get("store"))
    kwargs.update(overrides)
    try:
        return MessageCompactor(**kwargs)
    except BaseException:
        for obj in built:
            _close(obj)   # the ledger and the store pool this call opened
        raise


#: The store root and ledger path commands use when nothing configures them.
DEFAULT_STORE_ROOT = Path("compactor-data")
DEFAULT_LEDGER_PATH = Path("compactor-ledger/ledger.jsonl")


def resolve_store_root(flag: str | os.PathLike[str] | None = None,
                       config: Config | str | os.PathLike[str] | None = None) -> Path | str:
    """The store a command uses, for :func:`compactor._stores.open_store`: ``flag``
    (``--store``), else the config's :attr:`Config.store_root` (``[store] url`` or
    ``[store] root``, ``$COMPACTOR_HOME`` included; ``config`` a loaded :class:`Config` or
    a path for :func:`load_config`), else ``./compactor-data``. A ``postgresql://`` URL is
    returned as the string, a folder as a :class:`Path`.

    Raises:
        ConfigError: the config is invalid (only read when ``flag`` is not given).
    """
    if flag:
        return flag if isinstance(flag, str) and is_store_url(flag) else Path(flag)
    cfg = config if isinstance(config, Config) else load_config(config)
    return cfg.store_root or DEFAULT_STORE_ROOT


def resolve_ledger_path(flag: str | os.PathLike[str] | None = None,
                        config: Config | str | os.PathLike[str] | None = None) -> Path:
    """The ledger a command uses: ``flag`` (``--ledger``), else ``[ledger] path`` of the
    config (``$COMPACTOR_LEDGER`` included), else ``./compactor-ledger/ledger.jsonl``.

    Raises:
        ConfigError: the config is invalid (only read when ``flag`` is not given).
    """
    if flag:
        return Path(flag)
    cfg = config if isinstance(config, Config) else load_config(config)
    return cfg.ledger_path or DEFAULT_LEDGER_PATH


# ---------------------------------------------------------------------------- loading
class _Problems:
    """Collects config errors (each a one-line :class:`ConfigError`)."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, source: str | None, key: str, problem: str, fix: str) -> None:
        self.errors.append(config_error(source, key, problem, fix))


@dataclass
class _Layer:
    """One place values come from: a parsed document and its label."""

    doc: Mapping[str, Any]
    source: Source
    origin: str  # the file, $VARIABLE or --set
    base: Path | None = None  # relative paths in it are relative to this folder


def _origin(layer: _Layer) -> str:
    return "" if layer.source == "default" else layer.origin


def _as_table(p: _Problems, layer: _Layer, value: Any, key: str) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    p.add(layer.origin, key, f"must be a table, got {_show(value)}",
          f"write it as [{key}] with key = value lines below")
    return None


def _unknown(p: _Problems, layer: _Layer, key: str, name: str, known: Iterable[str],
             what: str = "key") -> None:
    known = list(known)
    p.add(layer.origin, key, f"unknown {what}",
          f"{did_you_mean(name, known)}known {what}s here: {', '.join(known)}")


def _scalars(p: _Problems, layer: _Layer, out: dict[str, Setting]) -> None:
    """Validate ``[compactor]``, ``[windows]``, ``[store]`` and ``[ledger]`` of one layer
    into ``out`` (dotted key -> Setting)."""
    for table in ("compactor", "windows", "store", "ledger"):
        if table not in layer.doc:
            continue
        t = _as_table(p, layer, layer.doc[table], table)
        if t is None:
            continue
        keys = _BY_TABLE[table]
        subs = WINDOW_TABLES if table == "windows" else ()
        for name, v in t.items():
            key = dotted(table, name)
            if name in subs:
                _window_table(p, layer, name, v, out)
                continue
            if name not in keys:
                _unknown(p, layer, key, name, [*keys, *subs])
                continue
            spec = keys[name]
            problem = spec.check(v)
            if problem:
                p.add(layer.origin, key, problem, spec.fix)
                continue
            if spec.check is _path and layer.base is not None:
                v = str(layer.base / Path(v).expanduser())
            out[key] = Setting(v, layer.source, _origin(layer))


def _window_table(p: _Problems, layer: _Layer, name: str, value: Any,
                  out: dict[str, Setting]) -> None:
    t = _as_table(p, layer, value, f"windows.{name}")
    if t is None:
        return
    for k, v in t.items():
        key = dotted("windows", name, k)
        if name == "tier_windows" and k not in _TIERS:
            _unknown(p, layer, key, k, _TIERS, "tier")
            continue
        if name == "model_tiers":
            if not k:
                p.add(layer.origin, key, "empty model pattern",
                      'write a glob such as "claude-opus*" = "orchestrator"')
                continue
            if v not in _TIERS:
                near = did_you_mean(v, _TIERS) if isinstance(v, str) else ""
                p.add(layer.origin, key, f"unknown tier {v!r}",
                      f"{near}map the pattern to one of: {', '.join(_TIERS)}")
                continue
        else:
            problem = _integer(1)(v)
            if problem:
                p.add(layer.origin, key, problem,
                      "write a window in tokens, e.g. 128000 (no quotes, no 'k')")
                continue
        out[key] = Setting(v, layer.source, _origin(layer))


def _defaults() -> dict[str, Setting]:
    out = {dotted(k.table, k.name): Setting(k.default, "default") for k in KEYS}
    for tier, window in TIER_WINDOWS.items():
        out[dotted("windows", "tier_windows", tier.value)] = Setting(window, "default")
    return out


#: How late each source is applied (a later one wins).
_RANK: dict[str, int] = {"default": 0, "file": 1, "env": 2, "flag": 3}


def _chosen_store(settings: Mapping[str, Setting]) -> tuple[str, Setting] | None:
    """Which of ``store.url`` / ``store.root`` names the store, as ``(key, setting)``: the
    one set by the later source (flag > env > file; ``_collect`` refuses both from one
    source); ``None`` when neither is set."""
    url, root = settings.get("store.url"), settings.get("store.root")
    if url is not None and url.value is not None and (
            root is None or root.value is None or _RANK[url.source] >= _RANK[root.source]):
        return "store.url", url
    if root is not None and root.value is not None:
        return "store.root", root
    return None


def _store_conflict(p: _Problems, settings: Mapping[str, Setting]) -> None:
    """``store.url`` and ``store.root`` set by the same source (one file, both ``--set``):
    one error naming both."""
    url, root = settings["store.url"], settings["store.root"]
    if url.value is not None and root.value is not None and url.source == root.source:
        p.add(url.origin or None, "store.url", "is set together with store.root (one "
              "store: a PostgreSQL URL or a folder)", "keep one: url for a PostgreSQL store, "
              "root for a folder store")


def _effective_model_tiers(settings: dict[str, Setting]) -> None:
    """Append the built-in model patterns after the user's (first match wins)."""
    prefix = "windows.model_tiers."
    for pattern, tier in DEFAULT_MODEL_TIERS:
        key = dotted("windows", "model_tiers", pattern)
        settings.setdefault(key, Setting(tier.value, "default"))
    # user rules first, then the defaults, in their own order
    user = [(k, s) for k, s in settings.items() if k.startswith(prefix) and s.source != "default"]
    dflt = [(k, s) for k, s in settings.items() if k.startswith(prefix) and s.source == "default"]
    for k, _ in user + dflt:
        del settings[k]
    settings.update(user + dflt)


def _key_part(key: str, prefix: str) -> str:
    rest = key[len(prefix):]
    return json.loads(rest) if rest.startswith('"') else rest


def _build_plan(p: _Problems, settings: Mapping[str, Setting]) -> PlanConfig:
    names = ("high_watermark", "low_watermark", "keep_recent", "keep_first_user",
             "max_summary_tokens", "summary_share", "overflow", "clear_tool_results",
             "clear_keep_last", "clear_min_tokens", "fill_to_target")
    try:
        return PlanConfig(**{n: settings[f"compactor.{n}"].value for n in names})
    except ConfigError as e:  # a rule across keys (low < high): re-worded into the one format
        name = e.field or ""
        problem = str(e).split("; fix:")[0]
        if problem.startswith(f"{name} "):
            problem = problem[len(name) + 1:]
        high = settings["compactor.high_watermark"]
        # the value at fault may be a default: then the file set the other one
        origin = settings.get(f"compactor.{name}", high).origin or high.origin or None
        spec = _BY_TABLE["compactor"].get(name)
        fix = (f"set low_watermark below high_watermark ({high.value:g}), e.g. "
               f"{round(high.value * 4 / 7, 2):g}" if name == "low_watermark"
               else spec.fix if spec else "correct the value")
        p.add(origin, f"compactor.{name}", problem, fix)
        return PlanConfig()


def _build_windows(p: _Problems, settings: Mapping[str, Setting]) -> WindowConfig:
    tiers = {Tier(_key_part(k, "windows.tier_windows.")): s.value for k, s in settings.items()
             if k.startswith("windows.tier_windows.") and s.source != "default"}
    models = tuple((_key_part(k, "windows.model_tiers."), Tier(s.value))
                   for k, s in settings.items()
                   if k.startswith("windows.model_tiers.") and s.source != "default")
    sizes = {_key_part(k, "windows.model_windows."): s.value for k, s in settings.items()
             if k.startswith("windows.model_windows.")}
    try:
        return WindowConfig(tier_windows=tiers, model_tiers=models, model_windows=sizes,
                            default_tier=Tier(settings["windows.default_tier"].value))
    except ConfigError as e:  # every value was checked above; kept as a guard
        p.add(None, f"windows.{e.field}", str(e).split("; fix:")[0],
              "write a window in tokens, e.g. 128000")
        return WindowConfig()


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(a.get(k), dict):
            _merge(a[k], v)
        else:
            a[k] = dict(v) if isinstance(v, Mapping) else v
    return a


def parse_override(text: str) -> dict[str, Any]:
    """``"compactor.high_watermark=0.8"`` -> ``{"compactor": {"high_watermark": 0.8}}``.
    The value is a TOML value; one that is not (``store.root=/srv/x``) is taken as a string.

    Raises:
        ConfigError: no ``=``, or the key is not a TOML dotted key (``source="--set"``).
    """
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise config_error("--set", text or "(empty)", "expected KEY=VALUE",
                           "write e.g. --set compactor.high_watermark=0.8")
    for candidate in (value, json.dumps(value)):
        try:
            return tomllib.loads(f"{key} = {candidate}")
        except tomllib.TOMLDecodeError:
            continue
    raise config_error("--set", key, "not a TOML dotted key",
                       'write e.g. windows.model_tiers."gpt-9*"=coding')


@functools.lru_cache(maxsize=1)
def _shipped_budgets() -> BudgetConfig:
    from .budgets._config import default_config_path, parse_config
    path = default_config_path()
    return parse_config(read_toml(path), source=str(path))


def _budgets(p: _Problems, doc: Mapping[str, Any], source: str | None, legacy: bool,
             env_file: str | None, settings: dict[str, Setting]) -> BudgetConfig:
    from .budgets._config import parse_config

    raw: Mapping[str, Any] = {}
    try:
        if env_file:
            cfg = load_config(env_file).budgets
            label: Source = "env"
            origin = f"${BUDGETS_ENV} ({env_file})"
        elif legacy or "budgets" in doc:
            label, origin = "file", source or ""
            if legacy:
                raw, prefix, merged = doc, "", doc
            else:
                t = _as_table(p, _Layer(doc, "file", origin), doc["budgets"], "budgets")
                if t is None:
                    return _shipped_budgets()
                raw, prefix, merged = t, "budgets", _over_shipped_budgets(t)
            cfg = parse_config(merged, source=source or "<code>", prefix=prefix)
        else:
            cfg, label, origin = _shipped_budgets(), "default", ""
    except ConfigError as e:
        p.errors.append(e)
        return _shipped_budgets()

    def put(key: str, value: Any, present: bool) -> None:
        if label == "env" or (label == "file" and present):
            settings[key] = Setting(value, label, origin)
        else:
            settings[key] = Setting(value, "default")

    def sub(name: str) -> Mapping[str, Any]:
        t = raw.get(name, {})
        return t if isinstance(t, Mapping) else {}

    st = sub("settings")
    put("budgets.settings.default_profile", cfg.default_profile, "default_profile" in st)
    put("budgets.settings.enforcement", cfg.enforcement, "enforcement" in st)
    for lv, share in cfg.alerts.levels():
        put(f"budgets.alerts.{lv}", share, lv in sub("alerts"))
    for name, val in vars(cfg.recommendations).items():
        put(f"budgets.recommendations.{name}", val, name in sub("recommendations"))
    own = "profiles" in raw
    for prof in cfg.profiles.values():
        base = dotted("budgets", "profiles", prof.name)
        put(f"{base}.budget_tokens", prof.budget_tokens, own)
        for scope, w in prof.weights.items():
            put(f"{base}.weights.{scope}", w, own)
        put(f"{base}.description", prof.description, own)
    for agent, prof_name in cfg.agents.items():
        put(dotted("budgets", "agents", agent), prof_name, "agents" in raw)
    return cfg


def _over_shipped_budgets(table: Mapping[str, Any]) -> Mapping[str, Any]:
    """``[budgets]`` without ``profiles`` changes the shipped budgets: its settings, alerts
    and recommendations key by key, its agents as a whole. With ``profiles`` it stands
    alone (as the old budgets file did)."""
    if "profiles" in table:
        return table
    from .budgets._config import default_config_path
    merged = read_toml(default_config_path())
    for name, value in table.items():
        if name in ("settings", "alerts", "recommendations") and isinstance(value, Mapping) \
                and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def _maintenance(p: _Problems, doc: Mapping[str, Any], source: str | None,
                 settings: dict[str, Setting]) -> MaintenanceConfig:
    from dataclasses import fields as dc_fields

    from .maintenance._config import MaintenanceConfig, parse_config

    try:
        cfg = parse_config(doc, source)
    except ConfigError as e:
        p.errors.append(e)
        cfg = MaintenanceConfig()
    raw = doc.get("maintenance", {})
    raw = raw if isinstance(raw, Mapping) else {}

    def origin_of(present: bool) -> tuple[Source, str]:
        return ("file", source or "") if present else ("default", "")

    # store and ledger: [maintenance] store/ledger, else [store] url or root (a URL kept
    # as the string; see _chosen_store) / [ledger] path (flag > env > file), else the
    # maintenance defaults
    ledger = settings["ledger.path"]
    paths: dict[str, Path | str] = {}
    for name, chosen, fallback in (
            ("store", _chosen_store(settings), DEFAULT_STORE_ROOT),
            ("ledger", ("ledger.path", ledger) if ledger.value is not None else None,
             DEFAULT_LEDGER_PATH)):
        if name in raw:
            paths[name] = getattr(cfg, name)
            settings[f"maintenance.{name}"] = Setting(str(paths[name]), *origin_of(True))
        elif chosen is not None:
            general, s = chosen
            paths[name] = s.value if general == "store.url" else Path(s.value)
            settings[f"maintenance.{name}"] = Setting(s.value, s.source,
                                                      f"{s.origin} ({general})")
        else:
            paths[name] = fallback
            settings[f"maintenance.{name}"] = Setting(str(fallback), "default")
    cfg = replace(cfg, store=paths["store"], ledger=paths["ledger"])
    # a URL store has no <store>/archive: unset until [maintenance] archive or --archive
    archive = None if cfg.archive is None and isinstance(cfg.store, str) else cfg.archive_root
    settings["maintenance.archive"] = Setting(None if archive is None else str(archive),
                                              *origin_of("archive" in raw))
    for name in ("counter", "ledger_rotate_mb"):
        settings[f"maintenance.{name}"] = Setting(getattr(cfg, name), *origin_of(name in raw))
    for section in ("tiers", "importance", "retention", "health"):
        sub = getattr(cfg, section)
        raw_sub = raw.get(section, {})
        raw_sub = raw_sub if isinstance(raw_sub, Mapping) else {}
        for f in dc_fields(sub):
            val = getattr(sub, f.name)
            settings[f"maintenance.{section}.{f.name}"] = Setting(
                list(val) if isinstance(val, tuple) else val, *origin_of(f.name in raw_sub))
    return cfg


def _collect(path: str | os.PathLike[str] | None, overrides: Iterable[Mapping[str, Any]],
             env: Mapping[str, str] | None) -> tuple[Config | None, list[ConfigError]]:
    env = os.environ if env is None else env
    file, origin = find_config(path, env)
    p = _Problems()
    try:
        doc = read_toml(file if file is not None else shipped_path())
    except ConfigError as e:
        return None, [e]
    source = file  # None: the shipped defaults, whose values count as defaults
    label = str(shipped_path()) if file is None else file
    base = Path(os.path.abspath(label)).parent

    top = list(doc)
    # the old budgets.toml layout: budgets tables at top level and none of ours
    legacy = any(k in LEGACY_BUDGET_TABLES for k in top) and not any(k in TABLES for k in top)
    for k in top:
        if k in TABLES:
            continue
        if legacy and (k in LEGACY_BUDGET_TABLES or not did_you_mean(k, TABLES)
                       or did_you_mean(k, LEGACY_BUDGET_TABLES)):
            continue  # the budgets loader names the unknown tables of the old layout
        fix = (f"move it under [budgets.{k}] (the budgets tables live in [budgets])"
               if k in LEGACY_BUDGET_TABLES else
               f"{did_you_mean(k, TABLES)}known tables: {', '.join(TABLES)}")
        p.add(label, dotted(k), "unknown table", fix)
        if legacy:  # a misspelt new table beside old budgets tables: reported once
            doc = {x: v for x, v in doc.items() if x != k}
    doc_ok = {k: v for k, v in doc.items() if k in TABLES}

    settings = _defaults()
    if not legacy:
        _scalars(p, _Layer(doc_ok, "file" if file else "default", label, base), settings)
    for var, (table, name) in ((STORE_ENV, ("store", "root")), (LEDGER_ENV, ("ledger", "path"))):
        if env.get(var):
            _scalars(p, _Layer({table: {name: env[var]}}, "env", f"${var}"), settings)
    flag_doc: dict[str, Any] = {}
    for o in overrides:
        _merge(flag_doc, o)
    for k in list(flag_doc):
        if k not in TABLES:
            _unknown(p, _Layer(flag_doc, "flag", "--set"), dotted(k), k, TABLES, "table")
            del flag_doc[k]
        elif k in ("budgets", "maintenance"):
            p.add("--set", dotted(k), "cannot be set with --set",
                  f"write it in the config file's [{k}] table")
            del flag_doc[k]
    _scalars(p, _Layer(flag_doc, "flag", "--set"), settings)
    _store_conflict(p, settings)
    _effective_model_tiers(settings)

    plan_cfg = windows = None
    if not any(e.field and e.field.startswith("compactor.") for e in p.errors):
        plan_cfg = _build_plan(p, settings)
    if not any(e.field and e.field.startswith("windows.") for e in p.errors):
        windows = _build_windows(p, settings)

    env_budgets = env.get(BUDGETS_ENV) if path is None else None
    # the shipped file's [budgets] and [maintenance] equal the defaults in code (pinned by
    # tests/config); without a file those are used, with source None
    budgets = _budgets(p, doc if file else {}, file, legacy, env_budgets or None, settings)
    maintenance = _maintenance(p, {} if legacy or not file else doc_ok, file, settings)
    if p.errors:
        return None, p.errors
    assert plan_cfg is not None and windows is not None
    return Config(file, origin, MappingProxyType(dict(settings)), plan_cfg, windows, budgets,
                  maintenance), []


def check_config(path: str | os.PathLike[str] | None = None, *,
                 overrides: Iterable[Mapping[str, Any]] = (),
                 env: Mapping[str, str] | None = None) -> tuple[Config | None, list[ConfigError]]:
    """Every problem of a config at once: ``(config, [])`` when it is valid, else
    ``(None, errors)`` (each a one-line :class:`ConfigError`; a file that cannot be read or
    parsed gives exactly one). Arguments as :func:`load_config`."""
    return _collect(path, overrides, env)


def load_config(path: str | os.PathLike[str] | None = None, *,
                overrides: Iterable[Mapping[str, Any]] = (),
                env: Mapping[str, str] | None = None) -> Config:
    """Find, read and validate ``compactor.toml``.

    Args:
        path: the file (``--config``); ``None``: ``$COMPACTOR_CONFIG``, else
            ``./compactor.toml`` if it exists, else the shipped defaults.
        overrides: documents (as :func:`parse_override` returns) that win over the file and
            the environment, e.g. ``[{"compactor": {"high_watermark": 0.8}}]``. Only
            ``[compactor]``, ``[windows]``, ``[store]`` and ``[ledger]`` keys.
        env: the environment (default ``os.environ``).

    Raises:
        ConfigError: the first problem found (:func:`check_config` returns them all): the
            file is unreadable or not TOML, an unknown table or key (with the nearest known
            name), a value of the wrong type or out of range, ``low_watermark`` not below
            ``high_watermark``, an unknown tier, a bad ``[budgets]`` or ``[maintenance]``
            value (``BudgetConfigError`` for the budgets).
    """
    cfg, errors = _collect(path, overrides, env)
    if errors:
        raise errors[0]
    assert cfg is not None
    return cfg
