"""Reading a child process's output with a deadline, so no test can hang on a pipe."""

from __future__ import annotations

import queue
import threading
from typing import IO


class LineReader:
    """Reads lines of ``stream`` on a daemon thread; :meth:`readline` waits at most
    ``timeout`` seconds for the next one."""

    def __init__(self, stream: IO[str]) -> None:
        self._q: queue.Queue[str] = queue.Queue()
        self._t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._t.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            self._q.put(line)
        self._q.put("")  # end of stream

    def readline(self, timeout: float = 30.0) -> str:
        """The next line ('' at end of stream).

        Raises:
            AssertionError: no line within ``timeout`` seconds.
        """
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout} s") from None
