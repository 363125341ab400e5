"""What the service's child processes (the projector, the derivations, the batch processes) share: a
fresh interpreter fed through a pipe on its stdin, stopped by closing that pipe, killed if it does not
stop in time."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from select import select as select_fds

from lineage.tuning import SERVICE_GC_THRESHOLDS


def configure_child_logging() -> None:
    """A child's log lines go to its stderr (the service's), at CHAINTRACE_LOG_LEVEL (default WARNING)."""
    logging.basicConfig(level=os.environ.get("CHAINTRACE_LOG_LEVEL", "WARNING").upper(),
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")


def prepare_child(niceness: int) -> None:
    """In the child: the parent says when to stop (end of its pipe), not Ctrl-C; lower priority than
    the requests the parent serves; the service's GC settings."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(niceness)
    gc.freeze()
    gc.set_threshold(*SERVICE_GC_THRESHOLDS)


class PipeLines:
    """The child's end of its pipe (stdin): lines, read without blocking longer than asked."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def ready(self, timeout: float) -> bool:
        """A line (or end of file) can be read now, or came within ``timeout`` seconds."""
        return b"\n" in self.buffer or bool(select_fds([self.fd], [], [], timeout)[0])

    def next_line(self) -> bytes | None:
        """The next line without its newline (blocking); None at end of file."""
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line


class PipedChild:
    """The parent's handle: ``python -m module`` with a pipe on its stdin (and one on its stdout when
    ``reports``); ``watch`` runs on a daemon thread until the child ends."""

    def __init__(self, module: str, first: bytes, watch: Callable[[], None], *, name: str,
                 reports: bool = False) -> None:
        self._send_lock = threading.Lock()
        self._stopping = False
        # A fresh interpreter, not a fork: nothing of this process's threads or locks comes along.
        self.process = subprocess.Popen(
            [sys.executable, "-m", module], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if reports else None, close_fds=True,
        )
        assert self.process.stdin is not None
        self._stdin = self.process.stdin
        self._send(first)
        self._thread = threading.Thread(target=watch, name=name, daemon=True)
        self._thread.start()

    def _send(self, data: bytes) -> bool:
        """False when the child is gone (broken pipe) or stopped."""
        try:
            with self._send_lock:
                self._stdin.write(data)
                self._stdin.flush()
            return True
        except (OSError, ValueError):  # broken pipe, or closed by stop()
            return False

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float) -> None:
        """Close the pipe: the child finishes what it has and exits. One still busy after ``timeout`` is
        killed (each child's work is safe to interrupt at any moment)."""
        self._stopping = True
        with self._send_lock, contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._thread.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
