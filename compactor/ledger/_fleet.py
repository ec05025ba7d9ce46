"""Many ledgers at once: patterns to ledgers, and the two engines that read them.

A *fleet* is a list of ledgers (one per host or worker), named by ``--ledger`` values that
may be glob patterns (``hosts/*/ledger.jsonl*``). Each match is mapped to the ledger it
belongs to: an active file is its own ledger; a closed segment
(``<stem>.<YYYYMMDD>-<seq>.jsonl[.gz]``) belongs to ``<stem>.jsonl`` in its folder; lock and
compression temp files are ignored. Every ledger is then read whole (its closed segments,
plain or gzip, oldest first, then its active file), each once, however many matches named it.

Two engines read a fleet and fill the same result types (``LedgerStats``, ``BudgetReport``):

* ``python``: :func:`~compactor.ledger.read_records` per ledger, folded record by record
  (the reader every other command uses; no extra dependency).
* ``duckdb`` (extra ``[duckdb]``): one SQL query over ``read_ndjson`` of every segment file
  (gzip included), the fields the figures need typed ``JSON`` so a value of the wrong type is
  skipped exactly where the python fold skips it. Lines the python reader rejects are
  rejected here too: text that is not JSON, JSON that is not an object, records without an
  integer ``schema_version`` or with a ``ts``/``event`` that is not a string. A torn last
  line that happens to be complete JSON (only its ``\\n`` missing) and a ``.gz`` segment
  that is cut or corrupt are *salvaged*: that one file is read by the python reader (same
  lines kept, the same way) into a temporary file the query reads instead.

Known differences (no ``Ledger`` writer produces such a line): a JSON object that lacks the
``session_id`` or ``agent_id`` key altogether is skipped by the python reader
(``missing_keys``) but counted, with a null value, by DuckDB, whose JSON reader gives a
missing key and a ``null`` value the same ``NULL``; a line with a ``NaN``/``Infinity``
literal (not JSON, but Python's parser takes it) is a record for the python reader and not
for DuckDB; an integer beyond 64 bits is a token count for the python fold, a float for
DuckDB.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

from compactor._errors import ConfigError
from compactor.ledger._codec import format_ts
from compactor.ledger._reader import (ReadReport, _open_segment, _read_stream, _skip_before,
                                      read_records)
from compactor.ledger._segments import Segment, list_segments

ENGINES = ("auto", "duckdb", "python")
"""Values of ``--engine``: ``auto`` is ``duckdb`` when it can be imported, else ``python``."""

#: closed segment names: <stem>.<YYYYMMDD>-<seq>.jsonl[.gz]
_SEGMENT = re.compile(r"^(?P<stem>.+)\.\d{8}-\d+\.jsonl(?:\.gz)?$")
#: files that belong to a ledger but hold no records
_NOT_RECORDS = re.compile(r"(\.lock|\.gz\.tmp)$")

#: The record fields the figures read, each typed JSON (see the module docstring).
FIELDS = ("schema_version", "ts", "event", "session_id", "agent_id", "tokens_before",
          "tokens_after", "cost_usd", "profile", "budget_tokens", "tokens", "blocked", "level")

#: Largest record DuckDB accepts, bytes (its default, 16 MiB, is below what the writer allows).
MAX_RECORD_BYTES = 1 << 28


class NoLedgerMatchError(ConfigError):
    """A ``--ledger`` glob pattern matched no ledger file.

    Attributes:
        pattern: the pattern as given.
    """

    def __init__(self, pattern: str) -> None:
        super().__init__(
            f"--ledger {pattern!r} matched no ledger file; fix: check the pattern (quote it, "
            "e.g. --ledger 'hosts/*/ledger.jsonl*', so the shell does not expand it) or pass "
            "a ledger's file", field="ledger")
        self.pattern = pattern


def ledger_of(path: Path) -> Path | None:
    """The active file of the ledger ``path`` belongs to: ``path`` itself for an active
    file, ``<stem>.jsonl`` for a closed segment, ``None`` for a lock or temp file."""
    name = path.name
    if _NOT_RECORDS.search(name):
        return None
    m = _SEGMENT.match(name)
    return path.with_name(m.group("stem") + ".jsonl") if m else path


def expand_ledgers(values: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The ledgers named by ``values``, in order of first mention, each once (absolute).

    A value with glob characters (``*``, ``?``, ``[``; ``**`` spans folders) is expanded;
    folders it matches are ignored. Every file named, by a pattern or as it is (a list the
    shell expanded, say), counts for its ledger (:func:`ledger_of`): a closed segment for its
    active file, a lock or temp file for nothing. A plain path is otherwise taken as it is
    (whether it holds a ledger is the caller's check, as for one ledger).

    Raises:
        NoLedgerMatchError: a pattern matched no ledger file, or every value named a lock
            or temp file.
    """
    out: dict[Path, None] = {}
    for value in values:
        text = os.fspath(value)
        if glob.has_magic(text):
            matches = [Path(os.path.abspath(m))
                       for m in sorted(glob.glob(os.path.expanduser(text), recursive=True))]
            found = [a for a in (ledger_of(p) for p in matches if not p.is_dir())
                     if a is not None]
            if not found:
                raise NoLedgerMatchError(text)
        else:
            active = ledger_of(Path(os.path.abspath(text)))
            found = [active] if active is not None else []
        for active in found:
            out.setdefault(active, None)
    if not out and values:
        raise NoLedgerMatchError(" ".join(os.fspath(v) for v in values))
    return list(out)


def choose_engine(name: str) -> str:
    """``"duckdb"`` or ``"python"`` for an ``--engine`` value.

    Raises:
        MissingExtraError: ``name`` is ``"duckdb"`` and duckdb cannot be imported.
        ValueError: ``name`` is not one of :data:`ENGINES`.
    """
    if name not in ENGINES:
        raise ValueError(f"engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name == "python":
        return "python"
    from compactor._optional import MissingExtraError, require

    try:
        require("duckdb", extra="duckdb", what="--engine duckdb")
    except ImportError:                 # installed but broken (a missing library, say)
        if name == "duckdb":
            raise MissingExtraError("duckdb", "duckdb", "--engine duckdb") from None
        return "python"
    except MissingExtraError:
        if name == "duckdb":
            raise
        return "python"
    return "duckdb"


@dataclass(frozen=True)
class Fleet:
    """Ledgers read together, and the ``ts`` lower bound applied to their records.

    Attributes:
        ledgers: active files (absolute), in the order given.
        since: only records with ``ts`` at or after it (aware), or ``None``.
    """

    ledgers: tuple[Path, ...]
    since: datetime | None = None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record of every ledger, ledger by ledger, through :func:`read_records`
        (torn and invalid lines skipped the way it skips them).

        Raises:
            OSError: a segment cannot be read.
        """
        for ledger in self.ledgers:
            yield from read_records(ledger, since=self.since)

    def files(self) -> list[Path]:
        """The files holding the records, the way :func:`read_records` picks them: each
        closed segment once (its plain form when it exists, else its ``.gz``; segments
        wholly before ``since`` left out), then the active file when it exists."""
        files: list[Path] = []
        for ledger in self.ledgers:
            segments = _skip_before(list_segments(ledger).segments, self.since)
            for seg in segments:
                chosen = seg.plain if seg.plain is not None else seg.gz
                if chosen is not None:
                    files.append(chosen)
            if ledger.exists():
                files.append(ledger)
        return files

    def query(self, *statements: str) -> list[list[tuple[Any, ...]]]:
        """Run ``statements`` in order on one DuckDB connection with a view ``records``
        over every file: one row per record, ``ev`` and ``t`` (``event`` and ``ts`` as
        text) plus :data:`FIELDS` (type ``JSON``; ``NULL`` when missing or null). Lines
        that are not records are not rows. Returns each statement's rows.

        Raises:
            MissingExtraError: duckdb is not installed.
            OSError: a file cannot be read (other than a cut or corrupt ``.gz``, salvaged).
        """
        from compactor._optional import require

        duckdb = require("duckdb", extra="duckdb", what="--engine duckdb")
        with tempfile.TemporaryDirectory(prefix="compactor-fleet-") as tmp:
            files = [str(f) for f in self.files()]
            salvaged: dict[str, str] = {}
            for f in files:
                if _torn_json_tail(f):
                    salvaged[f] = _salvage(f, tmp, len(salvaged))
            for _ in range(len(files) + 3):
                todo = [salvaged.get(f, f) for f in files]
                con = duckdb.connect(config={"temp_directory": tmp})   # spills stay in tmp
                try:
                    if not todo:
                        con.execute(f"CREATE VIEW records AS SELECT {_EMPTY}")
                    else:
                        con.execute(_view_sql(todo, self.since))
                    return [con.execute(sql).fetchall() for sql in statements]
                except duckdb.Error as e:
                    named = _failed_file(str(e), files, salvaged)
                    # older DuckDB versions do not name the file: look for it ourselves
                    bad = [named] if named is not None else _broken(files, salvaged)
                    if not bad:
                        raise OSError(f"duckdb could not read the ledger files: "
                                      f"{str(e).splitlines()[0]}") from None
                    if not all(os.path.exists(f) for f in bad):  # compressed or pruned
                        files = [str(f) for f in self.files()]    # meanwhile: re-list
                        continue
                    for f in bad:
                        salvaged[f] = _salvage(f, tmp, len(salvaged))
                finally:
                    con.close()
            raise OSError("duckdb could not read the ledger files (they kept changing)")


_EMPTY = ", ".join(["NULL::VARCHAR AS ev", "NULL::VARCHAR AS t"]
                   + [f"NULL::JSON AS {f}" for f in FIELDS]) + " WHERE false"


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_sql(files: list[str], since: datetime | None) -> str:
    columns = "{" + ", ".join(f"{_sql_str(f)}: 'JSON'" for f in FIELDS) + "}"
    listing = "[" + ", ".join(_sql_str(f) for f in files) + "]"
    since_sql = f" AND (ts->>'$') >= {_sql_str(format_ts(since))}" if since is not None else ""
    # The checks decode_line makes: an integer schema_version (not a bool), a string event,
    # a string ts of at least 10 characters starting with 4 digits.
    return (
        "CREATE VIEW records AS SELECT event->>'$' AS ev, ts->>'$' AS t, "
        + ", ".join(FIELDS) + " FROM read_ndjson(" + listing + ", columns=" + columns
        + ", ignore_errors=true, maximum_object_size=" + str(MAX_RECORD_BYTES) + ") "
        "WHERE json_type(schema_version) IN ('BIGINT', 'UBIGINT') "
        "AND json_type(event) = 'VARCHAR' AND json_type(ts) = 'VARCHAR' "
        "AND length(ts->>'$') >= 10 AND regexp_matches(ts->>'$', '^[0-9]{4}')" + since_sql)


def _torn_json_tail(path: str) -> bool:
    """A plain file whose last line lacks its ``\\n`` but parses as JSON (DuckDB would
    count it; the python reader calls it torn). Only plain files are looked at: a ``.gz``
    segment was a closed segment, whose torn tail the writer cut before closing it."""
    if path.endswith(".gz"):
        return False
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return False
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return False
            pos, tail = size, b""
            while pos > 0 and b"\n" not in tail:
                step = min(1 << 16, pos)
                pos -= step
                f.seek(pos)
                tail = f.read(step) + tail
    except OSError:
        return False       # unreadable: DuckDB's error (or the python reader) reports it
    fragment = tail[tail.rfind(b"\n") + 1:]
    try:
        json.loads(fragment)
    except ValueError:
        return False        # DuckDB skips a line that is not JSON, as the reader does
    return True


def _salvage(path: str, tmp: str, n: int) -> str:
    """Copy the records the python reader takes from ``path`` into a plain file under
    ``tmp`` (the same lines: its own line reader and decoder) and return its path."""
    target = os.path.join(tmp, f"salvaged-{n}.jsonl")
    p = Path(path)
    if p.name.endswith(".gz"):
        opened = _open_segment(Segment("", 0, None, p))
        if opened is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        name, stream, on_break = opened
    else:
        name, stream, on_break = path, open(path, "rb"), "read_error"
    with stream, open(target, "w", encoding="utf-8") as out:
        for record in _read_stream(name, stream, None, ReadReport(), None, on_break):
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    return target


def _broken(files: list[str], salvaged: dict[str, str]) -> list[str]:
    """Files not yet salvaged that are gone, or ``.gz`` files that do not decompress to
    their end (read through, as the python reader reads them)."""
    out = []
    for f in files:
        if f in salvaged:
            continue
        if not os.path.exists(f):
            out.append(f)
        elif f.endswith(".gz"):
            try:
                with gzip.open(f, "rb") as stream:
                    while stream.read(1 << 20):
                        pass
            except (OSError, EOFError, zlib.error):
                out.append(f)
    return out


def _failed_file(message: str, files: list[str], salvaged: dict[str, str]) -> str | None:
    """The not-yet-salvaged file a DuckDB error names (longest name first), or ``None``."""
    for f in sorted(files, key=len, reverse=True):
        if f in message and f not in salvaged:
            return f
    return None
