"""``python -m tests.support.batch_kill ARGS...``: the dialbgm CLI, which kills itself with SIGKILL
right after it has journaled the K-th reply a batch answered (K from DIALBGM_TEST_KILL_AFTER).

A fault injection for a moment that timing alone cannot hit: between collecting a batch's results
and writing them all. The kill is real (SIGKILL: no clean-up, no atexit); only its moment is chosen.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from dialbgm.calls import _journal

AFTER = int(os.environ["DIALBGM_TEST_KILL_AFTER"])
_append = _journal.JournalWriter.append
_seen = 0


def _append_then_die(self: _journal.JournalWriter, record: dict[str, Any]) -> None:
    global _seen
    _append(self, record)
    if record.get("batch_id"):
        _seen += 1
        if _seen >= AFTER:
            os.kill(os.getpid(), signal.SIGKILL)


_journal.JournalWriter.append = _append_then_die  # type: ignore[method-assign]

if __name__ == "__main__":
    from dialbgm.cli._app import main

    sys.argv = ["dialbgm", *sys.argv[1:]]
    main()
