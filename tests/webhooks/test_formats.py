"""What a receiver gets, field by field: Distribution's envelope and Quay's repo_push, signed with the secret."""

from __future__ import annotations

import datetime
import hashlib
import hmac
from pathlib import Path

from cargohold.events.model import Action
from tests.webhooks.receiver import receiving
from tests.webhooks.support import push_event, record, serving

SECRET = "s3cret-key"


def _timestamp(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_distribution_envelope_field_by_field_and_signed(tmp_path: Path) -> None:
    with receiving() as receiver:
        endpoints = [{"name": "dist", "url": receiver.url, "secret": SECRET, "batch_size": 1,
                      "headers": {"Authorization": ["Bearer t"]}}]
        with serving(tmp_path, endpoints) as server:
            push = push_event()
            mount = push_event(action=Action.BLOB_MOUNT, tag=None, media_type=None, size=77, detail={"from": "base/os"},
                               actor=None, actor_kind="anonymous", method="POST")
            delete = push_event(action=Action.TAG_DELETE, detail={}, method="DELETE")
            record(server.data_dir, endpoints, push, mount, delete)
            got = receiver.wait_for(3)
    assert [r.headers["Content-Type"] for r in got] == ["application/vnd.docker.distribution.events.v1+json"] * 3
    assert all(r.headers["Authorization"] == "Bearer t" for r in got)
    for request in got:
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Cargohold-Signature"] == expected
    source = got[0].events[0]["source"]
    assert source["addr"].endswith(f":{server.port}") and len(source["instanceID"]) == 36
    request = {"id": "req-1", "addr": "10.1.2.3", "host": "registry.example:5000", "useragent": "skopeo/1.13"}
    assert got[0].json == {"events": [{
        "id": push.id, "timestamp": _timestamp(push.at), "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": push.digest, "size": 1234,
            "length": 1234, "repository": "team/app", "tag": "1.0",
            "url": f"http://registry.example:5000/v2/team/app/manifests/{push.digest}",
        },
        "request": {**request, "method": "PUT"}, "actor": {"name": "alice"}, "source": source,
    }]}
    assert got[1].json == {"events": [{
        "id": mount.id, "timestamp": _timestamp(mount.at), "action": "mount",
        "target": {
            "mediaType": "application/octet-stream", "digest": mount.digest, "size": 77, "length": 77,
            "repository": "team/app", "fromRepository": "base/os",
            "url": f"http://registry.example:5000/v2/team/app/blobs/{mount.digest}",
        },
        "request": {**request, "method": "POST"}, "actor": {}, "source": source,
    }]}
    # a delete's target holds the repository and the tag (or digest) only, as Distribution's
    assert got[2].json == {"events": [{
        "id": delete.id, "timestamp": _timestamp(delete.at), "action": "delete",
        "target": {"repository": "team/app", "tag": "1.0"},
        "request": {**request, "method": "DELETE"}, "actor": {"name": "alice"}, "source": source,
    }]}


def test_quay_repo_push_one_per_tag_setting_push_and_signed(tmp_path: Path) -> None:
    with receiving() as receiver:
        endpoints = [{"name": "quay", "url": receiver.url, "format": "quay", "secret": SECRET}]
        with serving(tmp_path, endpoints) as server:
            by_digest = push_event(tag=None, detail={"tags": []})
            pull = push_event(action=Action.MANIFEST_PULL, method="GET")
            tagged = push_event(repository="acme/tools/cli", tag="v2", detail={"tags": ["v2", "latest"]})
            top = push_event(repository="app", tag="1", detail={"tags": ["1"]})
            record(server.data_dir, endpoints, by_digest, pull, tagged, top)
            got = receiver.wait_for(2)
    assert len(got) == 2  # the push by digest and the pull are not sent in Quay's format
    for request in got:
        assert request.headers["Content-Type"] == "application/json"
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Cargohold-Signature"] == expected
    assert got[0].json == {
        "repository": "acme/tools/cli", "namespace": "acme", "name": "tools/cli",
        "docker_url": "registry.example:5000/acme/tools/cli",
        "homepage": "http://registry.example:5000/v2/acme/tools/cli/tags/list", "updated_tags": ["v2", "latest"],
    }
    assert got[1].json == {
        "repository": "app", "namespace": "", "name": "app", "docker_url": "registry.example:5000/app",
        "homepage": "http://registry.example:5000/v2/app/tags/list", "updated_tags": ["1"],
    }


def test_server_public_url_names_the_links_and_no_host_leaves_them_out(tmp_path: Path) -> None:
    with receiving() as receiver:
        endpoints = [{"name": "dist", "url": receiver.url}]
        with serving(tmp_path, endpoints, sections={"server": {"public_url": "https://registry.example.com/"}}) as s:
            record(s.data_dir, endpoints, push_event())
            got = receiver.wait_for(1)
        digest = got[0].events[0]["target"]["digest"]
        assert got[0].events[0]["target"]["url"] == f"https://registry.example.com/v2/team/app/manifests/{digest}"
        receiver.received.clear()
        with serving(tmp_path, endpoints, data_dir=tmp_path / "other") as s:
            record(s.data_dir, endpoints, push_event(host="", address="", request_id="", user_agent="", method=""))
            got = receiver.wait_for(1)
    event = got[0].events[0]
    assert "url" not in event["target"]
    assert event["request"] == {"id": "", "method": "", "useragent": ""}  # as Distribution, these are always there
