"""Delivery from the outbox against real receivers and real servers: retries with growing gaps, nothing lost
to a SIGKILL or a receiver outage, event order per endpoint, one claimant per attempt across processes."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.servers import CargoholdServer, free_port
from tests.webhooks.receiver import Receiver, receiving
from tests.webhooks.support import delivery_rows, kill_hard, push_event, record, serving, wait_until, write_config


def test_a_receiver_answering_500_three_times_gets_the_event_with_growing_gaps(tmp_path: Path) -> None:
    with receiving(statuses=[500, 500, 500]) as receiver:
        endpoints = [{"name": "flaky", "url": receiver.url, "backoff": "100ms"}]
        with serving(tmp_path, endpoints) as server:
            event = push_event()
            record(server.data_dir, endpoints, event)
            got = receiver.wait_for(4)
            time.sleep(0.3)
            rows = delivery_rows(server.data_dir)
    assert len(got) == 4
    assert {r.events[0]["id"] for r in got} == {event.id}  # every attempt carries the event's one id
    assert [r.headers["X-Cargohold-Attempt"] for r in got] == ["1", "2", "3", "4"]
    gaps = [b.at - a.at for a, b in zip(got, got[1:], strict=False)]
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert gaps[0] >= 0.08 and gaps[2] <= 1.5, gaps  # 0.1, 0.2, 0.4 s, each +-20%
    assert [(r["state"], r["attempts"], r["last_status"]) for r in rows] == [("delivered", 4, 200)]


def test_a_server_killed_before_delivering_delivers_after_restart(tmp_path: Path) -> None:
    receiver = Receiver()  # down
    endpoints = [{"name": "hook", "url": receiver.url, "backoff": "100ms", "timeout": "1s"}]
    config = write_config(tmp_path, endpoints)
    server = CargoholdServer(tmp_path / "data", free_port(), ["--config", str(config)]).start()
    try:
        events = [push_event(tag=f"v{i}", detail={"tags": [f"v{i}"]}) for i in range(3)]
        record(server.data_dir, endpoints, *events)
        deadline = time.monotonic() + 10
        while not any(r["attempts"] for r in delivery_rows(server.data_dir)) and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_hard(server)
        assert [r["state"] for r in delivery_rows(server.data_dir)] == ["pending"] * 3
        receiver.start()
        time.sleep(0.5)
        assert receiver.requests() == []  # nobody left to send them
        server.start()
        got = receiver.wait_for_events(3)
        wait_until(lambda: [r["state"] for r in delivery_rows(server.data_dir)] == ["delivered"] * 3)
    finally:
        server.stop()
        receiver.stop()
    assert [event["id"] for event in got] == [e.id for e in events]


def test_a_receiver_down_for_a_while_gets_everything_in_order(tmp_path: Path) -> None:
    receiver = Receiver()
    endpoints = [{"name": "hook", "url": receiver.url, "backoff": "50ms", "batch_size": 4}]
    with serving(tmp_path, endpoints, backoff_max="300ms") as server:
        events = [push_event(tag=f"v{i}", detail={"tags": [f"v{i}"]}) for i in range(20)]
        record(server.data_dir, endpoints, *events[:10])
        time.sleep(1.5)  # the first ones are retried while the receiver is down; the rest wait behind them
        receiver.start()
        try:
            record(server.data_dir, endpoints, *events[10:])
            receiver.wait_for_events(20)
            time.sleep(0.5)
            got = receiver.requests()
        finally:
            receiver.stop()
        rows = delivery_rows(server.data_dir)
    ids = [event["id"] for request in got for event in request.events]
    assert list(dict.fromkeys(ids)) == [e.id for e in events]  # in order, nothing missing
    assert len(ids) == len(set(ids))  # a duplicate would carry the same id; none here: every 2xx is recorded
    assert {r["state"] for r in rows} == {"delivered"}
    assert max(len(r.events) for r in got) == 4  # the backlog went in envelopes of batch_size
    attempts = [r["attempts"] for r in rows]
    assert attempts[0] > 1 and attempts == sorted(attempts, reverse=True)  # earlier events were tried longer


def test_two_servers_on_one_database_never_send_the_same_attempt_twice(tmp_path: Path) -> None:
    # one answer in three fails, so that retries fall due in every process at once and they race for them
    with receiving(statuses=[200, 200, 500] * 200) as receiver:
        endpoints = [{"name": f"hook{i}", "url": f"{receiver.url}/{i}", "backoff": "50ms", "batch_size": 1}
                     for i in range(6)]
        config = write_config(tmp_path, endpoints)
        data = tmp_path / "data"
        first = CargoholdServer(data, free_port(), ["--config", str(config), "--workers", "2"]).start()
        second = CargoholdServer(data, free_port(), ["--config", str(config), "--workers", "2"]).start()
        try:
            events = [push_event(tag=f"v{i}", detail={"tags": [f"v{i}"]}) for i in range(20)]
            record(data, endpoints, *events)
            wait_until(lambda: {r["state"] for r in delivery_rows(data)} == {"delivered"}, timeout=60)
            got = receiver.requests()
        finally:
            first.stop()
            second.stop()
    attempts = collections.Counter(
        pair for r in got for pair in zip(r.headers["X-Cargohold-Delivery"].split(","),
                                           r.headers["X-Cargohold-Attempt"].split(","), strict=True))
    assert max(attempts.values()) == 1
    assert len(attempts) == sum(row["attempts"] for row in delivery_rows(data))  # every attempt counted, once
    for i in range(6):
        ids = [event["id"] for r in got if r.path == f"/hook/{i}" for event in r.events]
        assert list(dict.fromkeys(ids)) == [e.id for e in events]  # in order, each until it was taken
    senders = {r.events[0]["source"]["instanceID"] for r in got}
    assert len(senders) > 1, "one process delivered everything: the test did not make them compete"


def test_a_delivery_held_by_a_killed_process_is_sent_again_once_its_lease_ends(tmp_path: Path) -> None:
    with receiving(behaviour="hang") as receiver:
        endpoints = [{"name": "hook", "url": receiver.url, "timeout": "1s"}]
        config = write_config(tmp_path, endpoints)
        server = CargoholdServer(tmp_path / "data", free_port(), ["--config", str(config)]).start()
        try:
            event = push_event()
            record(server.data_dir, endpoints, event)
            receiver.wait_for(1)  # the attempt is under way: the receiver holds it
            kill_hard(server)
            [row] = delivery_rows(server.data_dir)
            assert row["state"] == "pending" and row["locked_until"] is not None
            receiver.behaviour = "answer"
            server.start()
            got = receiver.wait_for(2)
            wait_until(lambda: delivery_rows(server.data_dir)[0]["state"] == "delivered")
        finally:
            server.stop()
    assert [r.events[0]["id"] for r in got] == [event.id, event.id]  # a duplicate carries the same id
    assert got[1].at - got[0].at >= 1.0  # not before the dead process's lease ran out
    assert delivery_rows(server.data_dir)[0]["attempts"] == 2


def test_a_server_that_does_not_deliver_leaves_its_deliveries_to_one_that_does(tmp_path: Path) -> None:
    with receiving() as receiver:
        endpoints = [{"name": "hook", "url": receiver.url}]
        data = tmp_path / "data"
        (tmp_path / "quiet").mkdir()
        with serving(tmp_path / "quiet", endpoints, data_dir=data, deliver=False) as server:
            event = push_event()
            record(server.data_dir, endpoints, event)
            time.sleep(2.0)  # two polls, and a wake would have gathered
            assert receiver.requests() == []
            assert [(r["state"], r["attempts"]) for r in delivery_rows(data)] == [("pending", 0)]
            (tmp_path / "sender").mkdir()
            with serving(tmp_path / "sender", endpoints, data_dir=data):
                [got] = receiver.wait_for_events(1)
    assert got["id"] == event.id


def test_a_delivery_waits_while_the_server_serves_a_request(tmp_path: Path) -> None:
    with receiving() as receiver:
        endpoints = [{"name": "hook", "url": receiver.url}]
        with serving(tmp_path, endpoints, "--workers", "1") as server:
            upload = httpx.post(f"{server.url}/v2/team/app/blobs/uploads/")
            location = upload.headers["location"]
            sent = threading.Event()

            def slow_body() -> Iterator[bytes]:
                for _ in range(30):  # 3 s of a PATCH in flight
                    yield b"x" * 100
                    time.sleep(0.1)
                sent.set()

            patch = threading.Thread(target=lambda: httpx.patch(
                f"{server.url}{location}" if location.startswith("/") else location, content=slow_body(),
                headers={"content-type": "application/octet-stream"}, timeout=30))
            patch.start()
            time.sleep(0.3)
            record(server.data_dir, endpoints, push_event())
            time.sleep(2.0)  # due (and woken) well within the PATCH
            early = receiver.requests()
            patch.join()
            assert sent.is_set()
            receiver.wait_for_events(1)
    assert early == []
