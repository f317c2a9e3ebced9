"""Starting an arbiter process: a fresh interpreter on jobarbiter's own entry point.

Not multiprocessing's ``spawn``: that re-runs the user's main script in every
child, and with it whatever the script does at module level. Here the child
runs ``actors.arbiter.main`` and imports only what its spec names.

The host learns of the child's end from a pipe: the child holds its write
end, so the read end (the sentinel) becomes readable the moment the child is
gone, however it ended.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys

from actors.arbiter import ArbiterSpec
from actors.protocol import Spec, encode
from actors.wire import pack_frame

_ENTRY = "from actors.arbiter import main; main()"


class ArbiterProcess:
    """One arbiter process, as the Manager watches and ends it."""

    def __init__(self, popen: subprocess.Popen[bytes], sentinel: int) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.sentinel = sentinel  # readable once the process has ended

    @property
    def exitcode(self) -> int | None:
        """None while it runs; then its exit code, or minus the signal's number."""
        return self._popen.poll()

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        """Reap the ended process (its exit code is known after)."""
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        if self.sentinel >= 0:
            os.close(self.sentinel)
            self.sentinel = -1


def spawn(spec: ArbiterSpec) -> tuple[ArbiterProcess, socket.socket]:
    """Start an arbiter for ``spec``; returns it and the host's end of its link."""
    host_end, child_end = socket.socketpair()
    sentinel, child_alive = os.pipe()
    try:
        popen = subprocess.Popen(
            [sys.executable, "-c", _ENTRY, str(child_end.fileno()), str(child_alive)],
            pass_fds=(child_end.fileno(), child_alive),
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        os.close(sentinel)
        host_end.close()
        raise
    finally:
        child_end.close()
        os.close(child_alive)
    # The spec is the first frame; the socket buffers it until the child reads.
    # A child that died first is reported by its sentinel, like any death.
    with contextlib.suppress(OSError):
        host_end.sendall(pack_frame([encode(Spec(spec.to_wire()))]))
    return ArbiterProcess(popen, sentinel), host_end
