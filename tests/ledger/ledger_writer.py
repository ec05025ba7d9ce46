"""A writer process for the crash and concurrency tests (run as a script, not collected).

One writer: ``python ledger_writer.py PATH WRITER_ID COUNT ROTATE_BYTES FSYNC [--ack]
[--pause SECONDS] [--split SECONDS]`` emits COUNT ``usage`` records
``{"writer": WRITER_ID, "seq": n, ...}``, printing ``ready`` once the ledger is open.
With ``--ack`` it writes ``n\\n`` to stdout (one unbuffered write) after each ``emit``
returns: a printed sequence number is an acknowledged record.

Fork server: ``python ledger_writer.py --serve`` imports everything once, then for each
JSON line on stdin (``{"path", "writer", "rotate_bytes", "fsync", "pause", "split",
"stdout"}``) forks a writer process whose stdout is the named pipe ``stdout`` and
prints the child's pid. The crash test uses it so that 200 writers cost 200 forks, not
200 interpreter start-ups; each writer is still a separate process, killed with SIGKILL.

Fault hook ``--split SECONDS`` (``"split"`` for the server): every record's write goes
out as two ``write()`` calls with a sleep between, so a kill can land between the halves
and leave a torn last line (a single small write is practically atomic).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def run_writer(path: str, writer: int, count: int, rotate_bytes: int, fsync: str, *,
               ack: bool, pause: float, split: float) -> None:
    from compactor.ledger import Ledger, _ledger

    if split:
        state = {"second_half": False}

        def split_write(fd: int, data: memoryview) -> int:
            if state["second_half"] or len(data) < 2:
                state["second_half"] = False
                return os.write(fd, data)
            state["second_half"] = True
            n = os.write(fd, data[: len(data) // 2])
            time.sleep(split)
            return n

        _ledger._write = split_write  # type: ignore[assignment]

    ledger = Ledger(path, fsync=fsync, rotate_bytes=rotate_bytes)  # type: ignore[arg-type]
    os.write(1, b"ready\n")
    pad = "x" * 40
    for seq in range(count):
        ledger.emit("usage", {"writer": writer, "seq": seq, "agent_id": f"w{writer}",
                              "pad": pad[: seq % 41]})
        if ack:
            os.write(1, b"%d\n" % seq)
        if pause:
            time.sleep(pause)
    ledger.close()


def serve() -> int:
    import compactor.ledger  # noqa: F401  (imported once, before forking)

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                fd = os.open(cmd["stdout"], os.O_WRONLY)
                os.dup2(fd, 1)
                os.close(fd)
                run_writer(cmd["path"], cmd["writer"], 10**9, cmd["rotate_bytes"], cmd["fsync"],
                           ack=True, pause=cmd["pause"], split=cmd["split"])
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
    return 0


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        return serve()
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("writer", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("rotate_bytes", type=int)
    ap.add_argument("fsync")
    ap.add_argument("--ack", action="store_true")
    ap.add_argument("--pause", type=float, default=0.0)
    ap.add_argument("--split", type=float, default=0.0)
    args = ap.parse_args()
    run_writer(args.path, args.writer, args.count, args.rotate_bytes, args.fsync,
               ack=args.ack, pause=args.pause, split=args.split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
