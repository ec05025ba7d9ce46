"""``compactor`` with a fault at a chosen progress point (a script for the crash tests, not
collected): ``python fault_cli.py SPEC [--trace FILE] -- ARGV...`` installs a progress hook
(``compactor.maintenance._txn.step_hook``) in this process only, then runs
``compactor ARGV``. The shipped package has no way to enable it.

``SPEC`` is comma-separated ``POINT:ACTION[:N]``: at the ``N``-th pass (default 1) through
``POINT`` (``intent``, ``action``, ``write``, ``commit``, ``ledger``, or ``any`` for every
point counted together) perform ``ACTION``: ``kill`` (SIGKILL itself), ``enospc`` (raise
``OSError(ENOSPC)``) or ``pause`` (print ``PAUSED <point> <n>`` on stderr, then sleep until
killed). ``--trace FILE`` appends each point passed, one per line (flushed as it goes).
An empty SPEC only traces.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time


def parse(spec: str) -> dict[str, tuple[str, int]]:
    rules: dict[str, tuple[str, int]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        bits = part.split(":")
        if len(bits) not in (2, 3) or bits[1] not in ("kill", "enospc", "pause"):
            raise SystemExit(f"fault_cli: bad rule {part!r}; use POINT:kill|enospc|pause[:N]")
        rules[bits[0]] = (bits[1], int(bits[2]) if len(bits) == 3 else 1)
    return rules


def main() -> int:
    args = sys.argv[1:]
    cut = args.index("--")
    head, argv = args[:cut], args[cut + 1:]
    spec = head[0] if head else ""
    trace_path = head[head.index("--trace") + 1] if "--trace" in head else None
    rules = parse(spec)
    hits: dict[str, int] = {}
    trace = open(trace_path, "a", buffering=1) if trace_path else None

    def hook(point: str) -> None:
        hits[point] = hits.get(point, 0) + 1
        hits["any"] = hits.get("any", 0) + 1
        if trace is not None:
            trace.write(point + "\n")
        for key in (point, "any"):
            if key not in rules or hits[key] != rules[key][1]:
                continue
            action = rules[key][0]
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "pause":
                print(f"PAUSED {point} {hits[key]}", file=sys.stderr, flush=True)
                while True:
                    time.sleep(60)
            raise OSError(errno.ENOSPC, f"No space left on device (injected at {point})")

    from compactor.cli import main as cli_main
    from compactor.maintenance import _txn

    _txn.step_hook = hook
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
