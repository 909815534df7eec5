"""Which process owns a Redis client connection, from /proc (MONITOR names clients by ip:port).

The client's socket is the /proc/net/tcp row whose local port is the client's port and whose
remote port is Redis's; its inode appears as `socket:[inode]` among the owner's open files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.chaos.processes import descendants

TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def parse_tcp_table(text: str) -> Iterator[tuple[int, int, int]]:
    """`(local port, remote port, inode)` of each row of a /proc/net/tcp{,6} table."""
    for row in text.splitlines()[1:]:
        fields = row.split()
        if len(fields) < 10:
            continue
        local, remote, inode = fields[1], fields[2], fields[9]
        yield int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), int(inode)


def client_port(client: str) -> int | None:
    """The port of a MONITOR client field (`127.0.0.1:51234`, `[::1]:51234`); None for `lua`."""
    host, sep, port = client.rpartition(":")
    return int(port) if sep and host and port.isdigit() else None


def socket_inode(local_port: int, remote_port: int, tables: Iterable[Path] = TCP_TABLES) -> int | None:
    """Inode of the TCP socket from `local_port` to `remote_port`, if one is open."""
    for table in tables:
        try:
            text = table.read_text()
        except OSError:
            continue
        for local, remote, inode in parse_tcp_table(text):
            if local == local_port and remote == remote_port and inode:
                return inode
    return None


def holds_socket(pid: int, inode: int) -> bool:
    """Whether process `pid` has socket `inode` open."""
    wanted = f"socket:[{inode}]"
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for entry in entries:
        try:
            if os.readlink(f"/proc/{pid}/fd/{entry}") == wanted:
                return True
        except OSError:
            continue
    return False


def owner_of(client: str, redis_port: int, candidates: Iterable[int]) -> int | None:
    """Which of `candidates` (or a process below one) holds the connection `client`."""
    port = client_port(client)
    inode = socket_inode(port, redis_port) if port is not None else None
    if inode is None:
        return None
    for pid in candidates:
        if any(holds_socket(p, inode) for p in (pid, *descendants(pid))):
            return pid
    return None
