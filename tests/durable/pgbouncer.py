"""A PgBouncer in transaction pooling mode, in front of the test server.

``pgbouncer(folder)`` starts Debian's ``pgbouncer`` on a free loopback port,
pointed at the test database of the local server, and yields the DSN that
goes through it; the process is stopped by its pid afterwards. Without the
binary the test is skipped (under CI it fails: ``.ci/ensure-postgres``
installs it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

STARTED_WITHIN = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def pgbouncer(server_dsn: str) -> Iterator[str]:
    """A transaction-mode PgBouncer for ``server_dsn``'s database; its DSN.

    Its files live in a folder of its own, removed afterwards: as root we run
    it as the server's user (it will not run as root), who must reach them.
    """
    import pytest  # noqa: PLC0415 (this module is imported by tests only)

    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed; CI is set, so its tests must run")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    server = conninfo_to_dict(server_dsn)
    database, user = str(server.get("dbname")), str(server.get("user") or "postgres")
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="jobarbiter-pgbouncer-"))
    folder.chmod(0o755)
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{database} = host={server.get('host', '127.0.0.1')} "
        f"port={server.get('port', 5432)} dbname={database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 200\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    command = [binary, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in [folder, *folder.iterdir()]:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    dsn = make_conninfo(server_dsn, host="127.0.0.1", port=str(port))
    try:
        deadline = time.monotonic() + STARTED_WITHIN
        while True:
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {_said(folder)}") from None
                time.sleep(0.1)
        yield dsn
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _said(folder: Path) -> str:
    log = folder / "pgbouncer.log"
    return log.read_text() if log.exists() else "(no log)"
