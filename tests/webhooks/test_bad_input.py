"""Receivers that misbehave are bounded by their endpoint's timeout, recorded on the delivery, and hold up no
other endpoint; a URL that is not http(s) is refused where it is given."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cargohold.config import ConfigError, load_config
from tests.support.servers import SRC, CargoholdServer, free_port
from tests.webhooks.receiver import receiving
from tests.webhooks.support import delivery_rows, push_event, record, serving, wait_until, write_config


@pytest.mark.parametrize("url", ["ftp://hooks.example/x", "file:///etc/passwd", "hooks.example/x", "http://"])
def test_a_url_that_is_not_http_is_refused_at_load(tmp_path: Path, url: str) -> None:
    config = write_config(tmp_path, [{"name": "a", "url": "http://ok.example/"}, {"name": "b", "url": url}])
    with pytest.raises(ConfigError) as refused:
        load_config(str(config), {}, {})
    assert str(refused.value) == (f"notifications.endpoints[1].url: cannot use {url!r} (must be an http or https URL)")


def test_serve_refuses_a_bad_endpoint_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"name": "a", "url": "gopher://x", "timeout": "5s"}])
    done = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "serve", "--config", str(config), "--data-dir",
         str(tmp_path / "d"), "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "cargohold: notifications.endpoints[0].url: cannot use 'gopher://x' (must be an http or https URL)")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("setting, value, message", [
    ("timeout", "5 parsecs", "must be a duration such as 500ms, 5s or 1m, or seconds"),
    ("backoff", "0s", "must be more than 0 and at most an hour"),
    ("format", "slack", "must be distribution or quay"),
    ("max_attempts", 0, "must be between 1 and 1000"),
    ("name", "a b", "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
])
def test_each_bad_endpoint_setting_is_named_with_its_value(
    tmp_path: Path, setting: str, value: object, message: str,
) -> None:
    config = write_config(tmp_path, [{"name": "a", "url": "http://ok.example/", setting: value}])
    with pytest.raises(ConfigError) as refused:
        load_config(str(config), {}, {})
    assert str(refused.value) == f"notifications.endpoints[0].{setting}: cannot use {value!r} ({message})"


def test_distributions_notifications_load_as_they_are(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("""
notifications:
  events: {includereferences: true}
  endpoints:
    - name: alistener
      disabled: false
      url: https://mylistener.example.com/event
      headers:
        Authorization: ["Bearer <your token, if needed>"]
      timeout: 500ms
      threshold: 5
      backoff: 1s
      ignoredmediatypes: [application/octet-stream]
      ignore:
        mediatypes: [application/vnd.docker.image.rootfs.diff.tar.gzip]
        actions: [pull]
""")
    [endpoint] = load_config(str(config), {}, {}).notifications.endpoints
    assert (endpoint.timeout_seconds, endpoint.backoff_seconds, endpoint.threshold) == (0.5, 1.0, 5)
    assert endpoint.header_pairs() == [("Authorization", "Bearer <your token, if needed>")]
    environ = {"CARGOHOLD_NOTIFICATIONS_ENDPOINTS": "[{name: e, url: 'http://h/', timeout: 2}]"}
    [from_env] = load_config(str(config), {}, environ).notifications.endpoints
    assert (from_env.name, from_env.timeout_seconds) == ("e", 2.0)
    server = CargoholdServer(tmp_path / "data", free_port(), ["--config", str(config)]).start()
    server.stop()
    assert [line for line in server.log().splitlines() if "notifications" in line or "webhook endpoint" in line] == [
        "cargohold: webhook endpoint alistener (https://mylistener.example.com/event, distribution)",
        "cargohold: note: notifications.endpoints[0].threshold is not used: every failed attempt backs off"
        " (backoff, doubling up to notifications.backoff_max)",
        "cargohold: note: notifications.events.includereferences is not used: events carry no references",
    ]


def test_misbehaving_receivers_are_bounded_recorded_and_hold_up_nobody(tmp_path: Path) -> None:
    with (receiving() as good, receiving(behaviour="hang") as hang, receiving(behaviour="redirect") as loop,
          receiving(behaviour="huge", default=500) as huge):
        closed = f"http://127.0.0.1:{free_port()}/hook"
        bad = {"timeout": "1s", "max_attempts": 1, "batch_size": 1}
        endpoints = [
            {"name": "good", "url": good.url}, {"name": "hang", "url": hang.url, **bad},
            {"name": "loop", "url": loop.url, **bad}, {"name": "huge", "url": huge.url, **bad},
            {"name": "closed", "url": closed, **bad},
        ]
        with serving(tmp_path, endpoints) as server:
            events = [push_event(tag=f"v{i}", detail={"tags": [f"v{i}"]}) for i in range(3)]
            record(server.data_dir, endpoints, *events)
            good.wait_for_events(3)
            arrived = good.requests()
            hang.wait_for(1)
            wait_until(lambda: all(r["state"] == "dead" for r in delivery_rows(server.data_dir)
                                   if r["endpoint"] != "good"), timeout=20)
            rows = delivery_rows(server.data_dir)
            hanging = hang.requests()
            assert server.process is not None and server.process.poll() is None
    # the good endpoint had everything while the hanging one was still at its attempts (1 s each)
    assert arrived[-1].at < hanging[2].at
    assert [event["id"] for r in arrived for event in r.events] == [e.id for e in events]
    by = {(r["endpoint"], r["event_seq"]): r for r in rows}
    seqs = sorted({r["event_seq"] for r in rows})
    for seq in seqs:
        assert by["good", seq]["state"] == "delivered"
        assert by["hang", seq]["last_error"] == "no answer within 1 s" and by["hang", seq]["last_status"] is None
        assert by["loop", seq]["last_status"] == 307
        assert by["loop", seq]["last_error"] == "redirected to '/hook': redirects are not followed"
        assert by["huge", seq]["last_status"] == 500
        assert by["huge", seq]["last_error"] == "HTTP 500: " + "x" * 300  # the first 300 characters
        assert by["closed", seq]["last_error"].startswith("cannot connect") and by["closed", seq]["last_status"] is None
    assert len(loop.requests()) == 3  # one request per attempt: the redirect was not followed
    # each hanging attempt was cut at its timeout: three attempts one after another in about 3 s
    assert 1.5 <= hanging[2].at - hanging[0].at < 4.0


def test_a_disabled_or_filtered_endpoint_gets_no_deliveries(tmp_path: Path) -> None:
    with receiving() as receiver:
        endpoints = [
            {"name": "off", "url": receiver.url, "disabled": True},
            {"name": "pushes", "url": receiver.url + "/p", "actions": ["push"], "repositories": ["team/*"]},
            {"name": "nopull", "url": receiver.url + "/n", "ignore": {"actions": ["pull"]},
             "ignoredmediatypes": ["application/vnd.oci.image.index.v1+json"]},
        ]
        with serving(tmp_path, endpoints) as server:
            from cargohold.events.model import Action

            record(server.data_dir, endpoints,
                   push_event(), push_event(repository="other/app"), push_event(action=Action.MANIFEST_PULL),
                   push_event(media_type="application/vnd.oci.image.index.v1+json"),
                   push_event(action=Action.REPOSITORY_CREATE))
            time.sleep(2.0)
            got = receiver.events()
            rows = delivery_rows(server.data_dir)
    assert sorted((r["endpoint"], r["event_seq"]) for r in rows) == [
        ("nopull", 1), ("nopull", 2), ("pushes", 1), ("pushes", 4)]
    assert len(got) == 4
