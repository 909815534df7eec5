"""The pure parts of `python -m bench peers`: MONITOR parsing, tick attribution (by push time, and by
the tick each system says a push was for in the skew scenario), the counts, the skew report."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import peer_jobs
from bench.peers import _scenarios
from bench.peers.analysis import (
    MINUTE,
    SECOND,
    Gap,
    SkewCount,
    by_intended_tick,
    count_by_intent,
    count_ticks,
    expected_ticks,
    first_pushes,
    gap_around,
    intended_tick,
    lateness,
    nearest_tick,
    pair_starts,
    start_latency,
    tick_of,
)
from bench.peers.intent import (
    APSCHEDULER_ID,
    CRONWORK_ID,
    CronHashTick,
    JobIdTick,
    ZsetScoreTick,
    cron_next_times,
    zadd_pairs,
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
from bench.peers.report import Failure, ms, render_skew, skew_row, skew_targets
from bench.peers.runner import SkewOutcome
from bench.peers.sockets import client_port, parse_tcp_table, socket_inode
from bench.peers.systems import SYSTEMS, Stage

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


def test_every_id_of_one_script_rpush_is_credited_to_the_caller_on_redis_7() -> None:
    collector = EventCollector({Q}, caller_follows=True)
    collector.feed(line(11.0, "lua", "RPUSH", f"rq:queue:{Q}", "cw-1", "cw-2"))
    collector.feed(line(11.0, "127.0.0.1:7000", "EVALSHA", "abc", "1", "k"))
    assert [(p.job_id, p.client) for p in collector.pushes] == [
        ("cw-1", "127.0.0.1:7000"),
        ("cw-2", "127.0.0.1:7000"),
    ]


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


# -- the skew scenario: the tick each push was meant for -----------------------------------------


def quoted(*args: str) -> str:
    """Arguments as MONITOR quotes them (`"` and `\\` escaped)."""
    return " ".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in args)


def mline(at: float, client: str, *args: str) -> bytes:
    return f"+{at:.6f} [0 {client}] {quoted(*args)}".encode()


def meant(at: float, tick: float | None, job_id: str = "j", seq: int = 0, client: str = "c") -> Push:
    return Push(at, Q, job_id, client, seq, tick)


def test_cronwork_and_apscheduler_ids_carry_the_tick() -> None:
    cronwork = JobIdTick(CRONWORK_ID, "job id")
    assert cronwork.intended(Q, "cronwork-peers_second-1795994945", "c") == 1795994945
    assert cronwork.intended(Q, "cronwork-peers-second-x", "c") is None
    assert cronwork.intended(Q, "4c1d0c9e-1795994945", "c") is None  # someone else's id
    aps = JobIdTick(APSCHEDULER_ID, "job id")
    assert aps.intended(Q, "apscheduler-1795994945-9bd88095915047e1", "c") == 1795994945
    assert aps.intended(Q, "apscheduler-x-9bd88095915047e1", "c") is None


def test_a_push_meant_for_a_tick_is_read_before_it_in_the_stream() -> None:
    collector = EventCollector({Q}, intent=JobIdTick(CRONWORK_ID, "job id"))
    collector.feed(line(99.5, "127.0.0.1:1", "RPUSH", f"rq:queue:{Q}", "cronwork-s-100"))
    assert collector.pushes[0].intended == 100


def test_zadd_pairs_skip_the_flags() -> None:
    args = ["zadd", "k", "XX", "GT", "CH", "12", "a", "13.5", "b", "bad", "c"]
    assert zadd_pairs(args) == [(12.0, "a"), (13.5, "b")]


def test_rq_scheduler_push_is_meant_for_the_score_it_had_before_the_push() -> None:
    collector = EventCollector({Q}, intent=ZsetScoreTick())
    collector.feed(line(95.0, "127.0.0.1:9", "ZADD", "rq:scheduler:scheduled_jobs", "100", "job"))
    collector.feed(line(95.1, "127.0.0.1:9", "ZADD", "rq:other", "50", "job"))  # another set
    collector.feed(line(98.2, "127.0.0.1:1", "RPUSH", f"rq:queue:{Q}", "job"))  # a fast clock's push
    collector.feed(line(98.2, "127.0.0.1:1", "ZREM", "rq:scheduler:scheduled_jobs", "job"))
    collector.feed(line(98.2, "127.0.0.1:1", "ZADD", "rq:scheduler:scheduled_jobs", "101", "job"))
    collector.feed(line(99.1, "127.0.0.1:2", "RPUSH", f"rq:queue:{Q}", "job"))
    collector.feed(line(99.2, "127.0.0.1:2", "RPUSH", f"rq:queue:{Q}", "never-scheduled"))
    assert [p.intended for p in collector.pushes] == [100, 101, None]


def cron_jobs(*jobs: tuple[str, str]) -> str:
    return json.dumps([{"queue_name": q, "next_enqueue_time": t, "cron": "* * * * * *"} for q, t in jobs])


def test_cron_next_times_reads_each_queues_next_enqueue_time() -> None:
    text = cron_jobs((Q, "1970-01-01T00:01:40.000000Z"), ("peers_x_min", "1970-01-01T00:02:00.000000Z"))
    assert cron_next_times(text) == {Q: 100.0, "peers_x_min": 120.0}
    assert cron_next_times("not json") == {}
    assert cron_next_times('[{"queue_name": "q"}, 3]') == {}


def test_rq_cron_push_is_meant_for_its_own_replicas_saved_next_time() -> None:
    collector = EventCollector({Q}, intent=CronHashTick())
    fast, true = "127.0.0.1:7001", "127.0.0.1:7002"
    save = lambda at, client, name, t: collector.feed(  # noqa: E731
        mline(at, client, "HSET", f"rq:cron_scheduler:{name}", "pid", "1", "cron_jobs", cron_jobs((Q, t)))
    )
    save(90.0, fast, "fast", "1970-01-01T00:01:40.000000Z")
    save(90.1, true, "true", "1970-01-01T00:01:40.000000Z")
    collector.feed(mline(98.0, fast, "RPUSH", f"rq:queue:{Q}", "a"))  # 2 s early, meant for 100
    save(98.0, fast, "fast", "1970-01-01T00:01:41.000000Z")
    collector.feed(mline(100.001, true, "RPUSH", f"rq:queue:{Q}", "b"))
    collector.feed(mline(100.002, "127.0.0.1:7003", "RPUSH", f"rq:queue:{Q}", "c"))  # no hash saved
    assert [p.intended for p in collector.pushes] == [100, 100, None]


def test_apscheduler_replica_takes_the_run_time_from_its_executors_record() -> None:
    logger = logging.getLogger("test.apscheduler.executors.default")
    logger.setLevel(logging.INFO)
    logger.addFilter(peer_jobs.RunTimeFilter())
    logger.propagate = False
    run_time = datetime(2026, 11, 29, 23, 59, 35, tzinfo=UTC)
    logger.info('Running job "%s" (scheduled at %s)', "push_job", run_time)
    assert peer_jobs._scheduled.run_time == run_time
    logger.info('Job "%s" executed successfully', "push_job")  # other records change nothing
    assert peer_jobs._scheduled.run_time == run_time
    assert re.fullmatch(
        rf"apscheduler-{int(run_time.timestamp())}-[0-9a-f]{{32}}", peer_jobs.job_id(run_time)
    )
    assert peer_jobs.job_id(run_time.replace(microsecond=5)).startswith("apscheduler-x-")
    assert peer_jobs.job_id(None).startswith("apscheduler-x-")


def test_an_early_push_counts_for_its_intended_tick_not_the_previous_one() -> None:
    pushes = [
        meant(98.0, 100, seq=1),  # 2 s early
        meant(100.003, 100, seq=2),  # the same tick again: a duplicate
        meant(100.0, 101, seq=3),  # 1 s early, at the previous tick's instant
        meant(103.01, 103, seq=4),
    ]
    counts = count_by_intent(pushes, SECOND, 100, 103)
    assert (counts.expected, counts.pushed, counts.pushes) == (4, 3, 4)
    assert (counts.early, counts.duplicates, counts.missed, counts.flagged) == (2, 1, 1, 0)
    assert counts.earliest == pytest.approx(-2.0)
    assert counts.lateness is not None
    assert counts.lateness[0] == pytest.approx(-1.0)  # first pushes: -2, -1, +0.01


def test_a_push_without_a_said_tick_goes_to_the_nearest_one_flagged() -> None:
    assert (nearest_tick(99.6, SECOND), nearest_tick(100.4, SECOND), nearest_tick(89.0, MINUTE)) == (
        100,
        100,
        60,
    )
    assert intended_tick(meant(99.6, None), SECOND) == (100, False)
    assert intended_tick(meant(99.6, 101), SECOND) == (101, True)
    counts = count_by_intent([meant(99.6, None), meant(101.2, 100.5), meant(50.0, 50)], SECOND, 100, 101)
    assert (counts.pushed, counts.early, counts.flagged, counts.stray, counts.missed) == (1, 1, 1, 1, 1)


def test_pushes_by_intended_tick_keep_stream_order() -> None:
    groups = by_intended_tick([meant(100.2, 100, seq=5), meant(99.0, 100, seq=2)], SECOND, 100, 100)
    assert [p.seq for p in groups[100]] == [2, 5]


# -- the skew report and options -------------------------------------------------------------------


def test_milliseconds_of_early_pushes_keep_their_sign() -> None:
    assert ms(-1.99885) == "-1999 ms"
    assert ms(-0.0123) == "-12.3 ms"
    assert ms(None) == "—"


def skew_outcome(key: str, second: SkewCount, minute: SkewCount | None = None) -> SkewOutcome:
    system = next(s for s in SYSTEMS if s.key == key)
    empty = SkewCount(0, 0, 0, 0, None, 0, 0, 0, 0, None)
    return SkewOutcome(system, "+2s", second, minute or empty, {"replica-a": 7, "replica-b": 5}, "job id")


def test_skew_row_and_cronworks_targets() -> None:
    good = skew_outcome("cronwork", SkewCount(12, 12, 12, 0, None, 0, 0, 0, 0, (0.001, 0.006)))
    bad = skew_outcome("rqcron", SkewCount(12, 12, 24, 12, -1.999, 12, 0, 2, 0, (-1.999, -1.995)))
    assert (
        "| Cronwork | 12/12 | 12 | 0 | 0 | 0 | 1.0 ms | 6.0 ms | replica-a (+2s) 7, replica-b 5 |"
        in skew_row(good)
    )
    assert "| 12 (-1999 ms) | 12 |" in skew_row(bad) and "2 pushes unexplained" in skew_row(bad)
    assert skew_targets([bad]) is None
    text = skew_targets([good, bad])
    assert text is not None and "MISSED" not in text and text.count("ok") == 4
    early = skew_outcome("cronwork", SkewCount(12, 12, 12, 1, -0.2, 0, 0, 0, 0, (0.001, 0.006)))
    assert "early pushes 1 = 0 MISSED" in (skew_targets([early]) or "")
    lines = render_skew([good], [Failure("x", "X", "boom")], 12, "+2s")
    assert "| X | failed: boom |" in lines and lines[-1].startswith("Cronwork skew targets")


def test_scenarios_option_keeps_normal_first_and_rejects_unknown_names() -> None:
    assert _scenarios("skew, normal") == ["normal", "skew"]
    assert _scenarios("skew") == ["skew"]
    with pytest.raises(argparse.ArgumentTypeError):
        _scenarios("normal,drift")
    with pytest.raises(argparse.ArgumentTypeError):
        _scenarios(" , ")


def test_the_skewed_replica_gets_its_variables_on_top_of_the_stages(tmp_path: Path) -> None:
    stage = Stage("x", "redis://127.0.0.1:1/0", tmp_path, extra_env={"replica-a": {"PEERS_PROBE": "skewed"}})
    show = [sys.executable, "-c", "import os; print(os.environ.get('PEERS_PROBE'), os.environ['REDIS_URL'])"]
    for name in ("replica-a", "replica-b"):
        assert stage.start(name, show).wait(30) == 0
    assert (tmp_path / "replica-a.log").read_text().split() == ["skewed", "redis://127.0.0.1:1/0"]
    assert (tmp_path / "replica-b.log").read_text().split() == ["None", "redis://127.0.0.1:1/0"]
