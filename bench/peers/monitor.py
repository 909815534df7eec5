"""Redis MONITOR for the peer benchmark: parse its lines into queue pushes and job starts.

A MONITOR line is `+<unix time> [<db> <client>] "<command>" "<arg>" ...`: the server's clock
when the command ran, and the client's `ip:port`, or `lua` for a command a script ran. Redis
6.2 (the bundled server) prints a script's EVAL/EVALSHA line first and the commands it ran
right after it (a script is atomic, nothing interleaves); Redis 7 prints the commands first
and the EVAL line once the script returned. A push made by a script is credited to that
caller, so the benchmark can find the process that pushed whichever way a system pushes.
Commands queued in MULTI are printed when EXEC runs them, with the client's address.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.peers.intent import Intent

QUEUE_PREFIX = "rq:queue:"
JOB_PREFIX = "rq:job:"
LUA_CLIENT = "lua"
PUSH_COMMANDS = frozenset({"rpush", "lpush"})
SCRIPT_COMMANDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
HASH_SET_COMMANDS = frozenset({"hset", "hmset"})
ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("a"): 7, ord("b"): 8}


class MonitorLineError(ValueError):
    """A MONITOR line that does not have the documented shape."""


@dataclass(frozen=True)
class MonitorLine:
    """One command as MONITOR printed it."""

    at: float
    client: str
    command: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Push:
    """A job id pushed onto one of the watched queues, with who pushed it.

    `seq` is the line's position in the MONITOR stream: the server's order of execution, which
    timestamps (microseconds) cannot always tell apart within one pipeline. `intended` is the
    tick the system meant the push for, when the collector was given a way to read it
    (intent.py); None otherwise.
    """

    at: float
    queue: str
    job_id: str
    client: str
    seq: int = 0
    intended: float | None = None


@dataclass(frozen=True)
class Start:
    """A worker recording a job's start: rq's `started_at` stamp, seen at `at` (line `seq`)."""

    at: float
    job_id: str
    started_at: float
    seq: int = 0


def split_args(text: bytes) -> list[str]:
    """The quoted arguments of a MONITOR line, unescaped (`\\"`, `\\\\`, `\\n`, `\\xHH` ...).

    Bytes are decoded as latin-1, so binary values survive one byte per character.
    """
    args: list[str] = []
    i, size = 0, len(text)
    while i < size:
        if text[i] == 0x20:
            i += 1
            continue
        if text[i] != 0x22:
            raise MonitorLineError(f"expected a quoted argument at {i}: {text[:80]!r}")
        out = bytearray()
        i += 1
        while True:
            if i >= size:
                raise MonitorLineError(f"unterminated argument: {text[:80]!r}")
            byte = text[i]
            if byte == 0x22:
                i += 1
                break
            if byte == 0x5C:
                code = text[i + 1] if i + 1 < size else -1
                if code == ord("x"):
                    out.append(int(text[i + 2 : i + 4], 16))
                    i += 4
                    continue
                out.append(ESCAPES.get(code, code))
                i += 2
                continue
            out.append(byte)
            i += 1
        args.append(out.decode("latin-1"))
    return args


def parse_header(raw: bytes) -> tuple[float, str, bytes] | None:
    """`(time, client, rest)` of a MONITOR line; None for a reply that is not a command (`+OK`)."""
    line = raw.rstrip(b"\r\n")
    if not line.startswith(b"+"):
        return None
    space = line.find(b" [")
    close = line.find(b"] ", space)
    if space < 0 or close < 0:
        return None  # "+OK", the answer to MONITOR itself
    try:
        at = float(line[1:space])
    except ValueError:
        raise MonitorLineError(f"bad timestamp: {line[:80]!r}") from None
    db_and_client = line[space + 2 : close].split(b" ", 1)
    if len(db_and_client) != 2:
        raise MonitorLineError(f"bad client field: {line[:80]!r}")
    return at, db_and_client[1].decode("latin-1"), line[close + 2 :]


def command_name(rest: bytes) -> str:
    """The command of a line's argument part, lower case (scripts may call `rpush`)."""
    end = rest.find(b'"', 1)
    return rest[1:end].decode("latin-1").lower() if rest.startswith(b'"') and end > 0 else ""


def parse_line(raw: bytes) -> MonitorLine | None:
    """A whole MONITOR line; None for non-command replies."""
    header = parse_header(raw)
    if header is None:
        return None
    at, client, rest = header
    args = split_args(rest)
    if not args:
        raise MonitorLineError(f"no command: {raw[:80]!r}")
    return MonitorLine(at, client, args[0].lower(), tuple(args[1:]))


def parse_rq_time(value: str) -> float | None:
    """rq's `2026-01-02T03:04:05.123456Z` as a Unix time; None when it is not one."""
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class EventCollector:
    """Turns MONITOR lines into the pushes onto `queues` and the starts of the pushed jobs.

    Args:
        queues: rq queue names (not keys) whose pushes count.
        caller_follows: the server prints a script's EVAL line after the commands it ran
            (Redis 7 and later); otherwise before them (Redis 6).
        intent: reads each push's intended tick from the lines before it (intent.py).
    """

    def __init__(self, queues: set[str], caller_follows: bool = False, intent: Intent | None = None) -> None:
        self.queue_keys = {QUEUE_PREFIX + name: name for name in queues}
        self.caller_follows = caller_follows
        self.intent = intent
        self.pushes: list[Push] = []
        self.starts: list[Start] = []
        self._pushed_ids: set[str] = set()
        self._caller = LUA_CLIENT  # the client of the script running now (Redis 6 order)
        self._unresolved: list[int] = []  # indexes of script pushes awaiting their caller (Redis 7)
        self._seq = 0

    def feed(self, raw: bytes) -> None:
        """Take one raw MONITOR line."""
        self._seq += 1
        header = parse_header(raw)
        if header is None:
            return
        at, client, rest = header
        command = command_name(rest)
        if self.intent is not None and self.intent.wants(command, rest):
            self.intent.observe(client, split_args(rest))
        if command in SCRIPT_COMMANDS and client != LUA_CLIENT:
            self._script_called(client)
        elif command in PUSH_COMMANDS:
            self._push(at, client, split_args(rest))
        elif command in HASH_SET_COMMANDS and b"started_at" in rest:
            self._start(at, split_args(rest))

    def _script_called(self, client: str) -> None:
        if self.caller_follows:
            for index in self._unresolved:
                self.pushes[index] = replace(self.pushes[index], client=client)
            self._unresolved.clear()
        else:
            self._caller = client

    def _push(self, at: float, client: str, args: list[str]) -> None:
        if len(args) < 3 or args[1] not in self.queue_keys:
            return
        pending = client == LUA_CLIENT and self.caller_follows
        if client == LUA_CLIENT and not self.caller_follows:
            client = self._caller
        queue = self.queue_keys[args[1]]
        for job_id in args[2:]:  # RPUSH key id [id ...]
            if pending:
                self._unresolved.append(len(self.pushes))
            intended = self.intent.intended(queue, job_id, client) if self.intent is not None else None
            self.pushes.append(Push(at, queue, job_id, client, self._seq, intended))
            self._pushed_ids.add(job_id)

    def _start(self, at: float, args: list[str]) -> None:
        if len(args) < 2 or not args[1].startswith(JOB_PREFIX):
            return
        job_id = args[1].removeprefix(JOB_PREFIX)
        if job_id not in self._pushed_ids:
            return
        fields = args[2:]
        for name, value in zip(fields[::2], fields[1::2], strict=False):
            if name == "started_at" and (started := parse_rq_time(value)) is not None:
                self.starts.append(Start(at, job_id, started, self._seq))
                return


class MonitorTap:
    """A dedicated MONITOR connection whose lines a thread feeds to a collector."""

    def __init__(self, host: str, port: int, collector: EventCollector) -> None:
        self.address = (host, port)
        self.collector = collector
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.error: BaseException | None = None

    def __enter__(self) -> MonitorTap:
        sock = socket.create_connection(self.address, timeout=5)
        sock.sendall(b"MONITOR\r\n")
        buffer = b""
        while b"\r\n" not in buffer:  # wait for +OK: nothing the systems do is missed
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("redis closed the MONITOR connection")
            buffer += chunk
        if not buffer.startswith(b"+OK"):
            raise ConnectionError(f"MONITOR refused: {buffer[:80]!r}")
        sock.settimeout(0.25)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._read, args=(buffer.split(b"\r\n", 1)[1],), name="monitor", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def _read(self, buffer: bytes) -> None:
        assert self._sock is not None
        try:
            while not self._stopping.is_set():
                try:
                    chunk = self._sock.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for line in lines:
                    self.collector.feed(line)
        except (OSError, MonitorLineError) as exc:  # reported by the runner, not lost in a thread
            self.error = exc
