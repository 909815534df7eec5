"""The pure parts of `python -m bench peers`: MONITOR parsing, tick attribution, the counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.peers.analysis import (
    MINUTE,
    SECOND,
    Gap,
    count_ticks,
    expected_ticks,
    first_pushes,
    gap_around,
    lateness,
    pair_starts,
    start_latency,
    tick_of,
)
from bench.peers.monitor import (
    EventCollector,
    MonitorLineError,
    Push,
    Start,
    parse_header,
    parse_line,
    split_args,
)
from bench.peers.sockets import client_port, parse_tcp_table, socket_inode

Q = "peers_x_sec"


def push(at: float, job_id: str = "j", client: str = "127.0.0.1:1", seq: int = 0) -> Push:
    return Push(at, Q, job_id, client, seq)


def line(at: float, client: str, *args: str) -> bytes:
    return f"+{at:.6f} [0 {client}] ".encode() + b" ".join(f'"{a}"'.encode() for a in args)


# -- MONITOR lines ---------------------------------------------------------------------------


def test_split_args_unescapes_what_redis_escapes() -> None:
    raw = rb'"HSET" "k" "a \"q\" \\ b" "x\n\x9c\x05" ""'
    assert split_args(raw) == ["HSET", "k", 'a "q" \\ b', "x\n\x9c\x05", ""]


def test_split_args_rejects_an_unterminated_argument() -> None:
    with pytest.raises(MonitorLineError):
        split_args(b'"RPUSH" "rq:queue:x')


def test_parse_line_reads_time_client_and_command_from_a_real_line() -> None:
    raw = b'+1795994945.007943 [0 127.0.0.1:44936] "RPUSH" "rq:queue:peers_cw_sec" "cronwork-sec-1795994945"\r\n'
    parsed = parse_line(raw)
    assert parsed is not None
    assert parsed.at == pytest.approx(1795994945.007943)
    assert parsed.client == "127.0.0.1:44936"
    assert parsed.command == "rpush"
    assert parsed.args == ("rq:queue:peers_cw_sec", "cronwork-sec-1795994945")


def test_script_lines_name_lua_as_the_client_and_ok_is_no_command() -> None:
    header = parse_header(b'+1795994945.544615 [0 lua] "RPUSH" "cronwork:attempts:sec:1" "{}"')
    assert header is not None and header[1] == "lua"
    assert parse_header(b"+OK") is None


# -- collecting pushes and starts ------------------------------------------------------------


def test_pushes_are_taken_by_queue_name_whoever_pushes() -> None:
    collector = EventCollector({Q})
    collector.feed(line(10.001, "127.0.0.1:5000", "RPUSH", f"rq:queue:{Q}", "a"))
    collector.feed(line(10.002, "127.0.0.1:5000", "RPUSH", "rq:queue:other", "b"))
    collector.feed(line(10.003, "127.0.0.1:5000", "RPUSH", f"rq:queue:{Q}:intermediate", "c"))
    collector.feed(line(10.004, "127.0.0.1:5001", "LPUSH", f"rq:queue:{Q}", "d"))
    assert [(p.job_id, p.client) for p in collector.pushes] == [
        ("a", "127.0.0.1:5000"),
        ("d", "127.0.0.1:5001"),
    ]


def test_a_script_push_is_credited_to_the_evalsha_line_before_it_on_redis_6() -> None:
    collector = EventCollector({Q})
    collector.feed(line(11.0, "127.0.0.1:7000", "EVALSHA", "abc", "1", "k"))
    collector.feed(line(11.0, "lua", "GET", "k"))
    collector.feed(line(11.0, "lua", "rpush", f"rq:queue:{Q}", "cw-1"))  # scripts may use lower case
    collector.feed(line(11.1, "127.0.0.1:7001", "EVALSHA", "abc", "1", "k"))
    collector.feed(line(11.1, "lua", "RPUSH", f"rq:queue:{Q}", "cw-2"))
    assert [(p.job_id, p.client) for p in collector.pushes] == [
        ("cw-1", "127.0.0.1:7000"),
        ("cw-2", "127.0.0.1:7001"),
    ]


def test_a_script_push_is_credited_to_the_eval_line_after_it_on_redis_7() -> None:
    collector = EventCollector({Q}, caller_follows=True)
    collector.feed(line(11.0, "lua", "RPUSH", f"rq:queue:{Q}", "cw-1"))
    collector.feed(line(11.0, "127.0.0.1:7000", "EVALSHA", "abc", "1", "k"))
    assert [(p.job_id, p.client) for p in collector.pushes] == [("cw-1", "127.0.0.1:7000")]


def test_starts_are_rqs_started_at_of_pushed_jobs_only() -> None:
    collector = EventCollector({Q})
    collector.feed(line(12.0, "127.0.0.1:1", "RPUSH", f"rq:queue:{Q}", "a"))
    collector.feed(
        line(
            12.01,
            "127.0.0.1:2",
            "HSET",
            "rq:job:a",
            "status",
            "started",
            "started_at",
            "1970-01-01T00:00:12.005000Z",
        )
    )
    collector.feed(
        line(12.02, "127.0.0.1:2", "HSET", "rq:job:zz", "started_at", "1970-01-01T00:00:12.006000Z")
    )
    collector.feed(line(12.03, "127.0.0.1:2", "HSET", "rq:job:a", "started_at", ""))
    assert [(s.job_id, s.started_at) for s in collector.starts] == [("a", pytest.approx(12.005))]


# -- attribution and counts ------------------------------------------------------------------


def test_tick_is_the_floor_of_the_push_time_per_period() -> None:
    assert tick_of(100.999, SECOND) == 100
    assert tick_of(100.0, SECOND) == 100
    assert tick_of(179.5, MINUTE) == 120
    assert expected_ticks(100.2, 104, SECOND) == [101, 102, 103, 104]
    assert expected_ticks(100, 250, MINUTE) == [120, 180, 240]


def test_duplicates_and_misses_are_counted_per_expected_tick() -> None:
    pushes = [push(100.002), push(100.003), push(101.01), push(103.5), push(99.9), push(105.0)]
    counts = count_ticks(pushes, SECOND, 100, 104)
    assert (counts.expected, counts.pushed, counts.duplicates, counts.missed, counts.pushes) == (
        5,
        3,
        1,
        2,
        4,
    )


def test_a_push_over_a_second_late_counts_for_the_next_tick() -> None:
    # The documented limit of the floor rule: tick 100 pushed at 101.2 looks like 101's duplicate.
    counts = count_ticks([push(101.2), push(101.001)], SECOND, 100, 101)
    assert (counts.missed, counts.duplicates) == (1, 1)


def test_lateness_takes_each_ticks_first_push_before_the_kill() -> None:
    pushes = [push(100.010), push(100.004), push(101.020), push(102.001), push(99.5)]
    firsts = first_pushes(pushes, SECOND, first=100, before=101.5)
    assert sorted(firsts) == [100, 101]
    assert sorted(lateness(firsts)) == [pytest.approx(0.004), pytest.approx(0.020)]


def test_starts_pair_with_the_push_of_the_same_job_id_in_between_re_pushes() -> None:
    # rq-scheduler re-pushes one job id; its re-save carries the previous run's started_at.
    first, second = push(100.1, "same", seq=1), push(101.1, "same", seq=4)
    starts = [
        Start(100.12, "same", 100.11, seq=2),
        Start(100.13, "same", 100.11, seq=3),  # the end-of-run save: not a new start
        Start(101.1, "same", 100.11, seq=3),  # stale, before the push
        Start(101.15, "same", 101.14, seq=5),
    ]
    paired = pair_starts([second, first], starts)
    assert paired == {first: pytest.approx(100.11), second: pytest.approx(101.14)}
    assert sorted(start_latency({100: first, 101: second}, paired)) == [
        pytest.approx(0.11),
        pytest.approx(0.14),
    ]


def test_stale_started_at_rewritten_after_the_push_is_ignored() -> None:
    only = push(101.1, "same", seq=1)
    assert pair_starts([only], [Start(101.2, "same", 100.5, seq=2)]) == {}


def test_gap_is_the_longest_interval_from_the_last_push_before_the_kill() -> None:
    times = [98.0, 99.0, 100.0, 101.9, 102.0, 103.0]
    gap = gap_around(times, killed_at=100.5, horizon=5)
    assert gap is not None and not gap.open_ended
    assert gap.seconds == pytest.approx(1.9)


def test_gap_without_any_push_after_the_kill_is_a_lower_bound() -> None:
    assert gap_around([99.0, 100.0], killed_at=100.5, horizon=5) == Gap(5.5, open_ended=True)
    assert gap_around([101.0], killed_at=100.5, horizon=5) is None


# -- who pushed --------------------------------------------------------------------------------

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1A85 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0
   1: 0100007F:AF88 0100007F:1A85 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0 20 4 30 10 -1
   2: 0100007F:1A85 0100007F:AF88 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0 20 4 30 10 -1
"""


def test_the_client_socket_is_the_row_from_its_port_to_redis(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(TCP)
    assert list(parse_tcp_table(TCP))[1] == (0xAF88, 0x1A85, 2222)
    assert socket_inode(0xAF88, 0x1A85, [table]) == 2222
    assert socket_inode(0xAF89, 0x1A85, [table]) is None


def test_client_port_of_monitor_client_fields() -> None:
    assert client_port("127.0.0.1:44936") == 44936
    assert client_port("[::1]:44936") == 44936
    assert client_port("lua") is None
    assert client_port("unix:/tmp/redis.sock") is None
