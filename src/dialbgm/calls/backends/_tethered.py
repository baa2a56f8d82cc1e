"""Child processes that die with the dialbgm process that started them, however it ends.

``kill -9`` of a parent runs none of its clean-up, so a server it started would live on (the
local judge's llama.cpp server holds ~750 MB). The parent therefore keeps the write end of a
pipe whose read end only the child holds; the kernel closes the write end when the parent dies,
in any way, and a watchdog thread in the child, blocked reading the pipe, then ends the child at
once. (``prctl(PR_SET_PDEATHSIG)`` is not used: it fires when the *thread* that started the child
ends, and the server is started from a worker thread that may end before the run does.)

The child runs ``python -m dialbgm.calls.backends._tethered FD MODULE ARGS...``: the watchdog, then
MODULE run as ``__main__`` in the same process, so the pid the parent holds is the server's own.
Its output goes to an anonymous temporary file (no name on disk, freed by the kernel when both
processes are gone), so no log is left behind either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from typing import IO


class Tethered:
    """A running child tied to this process, with its combined stdout/stderr kept aside."""

    def __init__(self, module: str, args: list[str]) -> None:
        self.log: IO[bytes] = tempfile.TemporaryFile(prefix="dialbgm-child-")  # noqa: SIM115 (closed in close())
        read_end, self._write_end = os.pipe()  # both non-inheritable: only pass_fds reaches the child
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(read_end), module, *args],
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                pass_fds=(read_end,),
                # Its own session: a Ctrl-C in the terminal reaches dialbgm, which stops the child in order.
                start_new_session=True,
            )
        except BaseException:
            os.close(self._write_end)
            self.log.close()
            raise
        finally:
            os.close(read_end)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def tail(self, n: int = 2000) -> str:
        """The last ``n`` bytes the child wrote (read without moving the child's file offset)."""
        size = os.fstat(self.log.fileno()).st_size
        start = max(0, size - n)
        return os.pread(self.log.fileno(), size - start, start).decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the pipe and the log are released either way."""
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self.close()

    def close(self) -> None:
        if self._write_end >= 0:
            os.close(self._write_end)  # the child's watchdog sees end-of-file and ends it
            self._write_end = -1
        self.log.close()


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    os._exit(1)  # the parent is gone: end now, whatever the main thread is doing


def main(argv: list[str]) -> None:
    import runpy

    fd, module, args = int(argv[0]), argv[1], argv[2:]
    threading.Thread(target=_watch, args=(fd,), name="dialbgm-parent-watchdog", daemon=True).start()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
