"""The ``proxies`` configuration: what it accepts, what it refuses (with the key at fault), what it derives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cargohold.config import ConfigError, load_config
from cargohold.proxy.routing import ProxyRoutes


def config_with(tmp_path: Path, proxies: list[dict[str, Any]], **more: Any) -> Any:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"proxies": proxies, **more}))
    return load_config(str(path), {}, {})


def test_a_full_entry_loads_with_its_password_read(tmp_path: Path) -> None:
    (tmp_path / "hub-password").write_text("s3cret\n")
    config = config_with(tmp_path, [
        {"prefix": "dockerhub", "upstream": "https://registry-1.docker.io", "username": "me",
         "password_file": str(tmp_path / "hub-password"), "revalidate": "1m", "ttl": "24h",
         "default_namespace": "library", "platforms": ["linux/amd64", "linux/arm64/v8"]},
        {"prefix": "mirrors/ghcr", "upstream": "https://ghcr.io/", "ttl": 0, "tls": {"insecure": True}},
    ])
    hub, ghcr = config.proxies
    assert hub.password() == "s3cret" and hub.revalidate_seconds == 60 and hub.ttl_seconds == 86400
    assert ghcr.revalidate_seconds == 300 and ghcr.ttl_seconds == 0 and ghcr.tls.insecure
    # the resolved configuration travels to the workers as JSON
    assert type(config).from_json(config.to_json()) == config


@pytest.mark.parametrize(("entries", "message"), [
    ([{"prefix": "hub", "upstream": "https://a.example"}, {"prefix": "hub", "upstream": "https://b.example"}],
     "proxies[1].prefix: 'hub' overlaps proxies[0].prefix 'hub'"),
    ([{"prefix": "hub", "upstream": "https://a.example"}, {"prefix": "hub/x", "upstream": "https://b.example"}],
     "proxies[1].prefix: 'hub/x' overlaps proxies[0].prefix 'hub'"),
    ([{"prefix": "Hub", "upstream": "https://a.example"}], "proxies[0].prefix: cannot use 'Hub'"),
    ([{"prefix": "_catalog", "upstream": "https://a.example"}], "proxies[0].prefix: cannot use '_catalog'"),
    ([{"prefix": "hub/", "upstream": "https://a.example"}], "proxies[0].prefix: cannot use 'hub/'"),
    ([{"prefix": "hub", "upstream": "ftp://a.example"}], "proxies[0].upstream: cannot use 'ftp://a.example'"),
    ([{"prefix": "hub", "upstream": "https://a.example/v2/"}], "proxies[0].upstream: cannot use"),
    ([{"prefix": "hub", "upstream": "https://a.example", "revalidate": "soon"}],
     "proxies[0].revalidate: cannot use 'soon'"),
    ([{"prefix": "hub", "upstream": "https://a.example", "ttl": "-1h"}], "proxies[0].ttl: cannot use '-1h'"),
    ([{"prefix": "hub", "upstream": "https://a.example", "username": "me"}],
     "proxies[0]: username and password_file go together"),
    ([{"prefix": "hub", "upstream": "https://a.example", "platforms": ["amd64"]}],
     "proxies[0].platforms[0]: cannot use 'amd64'"),
    ([{"prefix": "hub", "upstream": "https://a.example", "default_namespace": "a/b"}],
     "proxies[0].default_namespace: cannot use 'a/b'"),
    ([{"prefix": "hub", "upstream": "https://a.example", "colour": "red"}], "unknown setting 'proxies[0].colour'"),
    ([{"upstream": "https://a.example"}], "proxies[0].prefix is required"),
])
def test_bad_entries_are_refused_naming_the_key(tmp_path: Path, entries: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_with(tmp_path, entries)
    assert message in str(refused.value)


def test_an_unreadable_or_empty_password_file_is_refused_at_load(tmp_path: Path) -> None:
    entry = {"prefix": "hub", "upstream": "https://a.example", "username": "me",
             "password_file": str(tmp_path / "missing")}
    with pytest.raises(ConfigError, match=r"proxy 'hub': cannot read password_file .*missing"):
        config_with(tmp_path, [entry])
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match=r"proxy 'hub': password_file .*empty is empty"):
        config_with(tmp_path, [{**entry, "password_file": str(tmp_path / "empty")}])


def test_each_proxy_with_a_ttl_gets_a_retention_policy_first(tmp_path: Path) -> None:
    mine = {"repositories": ["*"], "keep_tags": [{"most_recently_pushed_count": 3}]}
    config = config_with(tmp_path, [
        {"prefix": "hub", "upstream": "https://a.example", "ttl": "2h"},
        {"prefix": "forever", "upstream": "https://b.example", "ttl": 0},
    ], retention={"enabled": True, "policies": [mine]})
    policies = config.effective_retention.policies
    assert [p.repositories for p in policies] == [["hub/*"], ["*"]]
    assert policies[0].keep_tags[0].pulled_within == 7200 and policies[0].delete_untagged
    assert config.effective_retention.policy_for("hub/library/debian") == policies[0]
    assert config.effective_retention.policy_for("forever/x") == policies[1]
    # retention off: the job runs for the proxies only
    off = config_with(tmp_path, [{"prefix": "hub", "upstream": "https://a.example"}],
                      retention={"policies": [mine]})
    assert off.effective_retention.enabled
    assert [p.repositories for p in off.effective_retention.policies] == [["hub/*"]]


def test_names_map_to_their_proxy_and_upstream_name(tmp_path: Path) -> None:
    config = config_with(tmp_path, [
        {"prefix": "dockerhub", "upstream": "https://registry-1.docker.io", "default_namespace": "library"},
        {"prefix": "mirrors/ghcr", "upstream": "https://ghcr.io"},
        {"prefix": "local", "upstream": "http://127.0.0.1:5001"},
    ])
    routes = ProxyRoutes(config.proxies)
    found = routes.match("dockerhub/library/debian")
    assert found is not None and found.proxy.prefix == "dockerhub" and found.upstream_name == "library/debian"
    found = routes.match("mirrors/ghcr/org/app")
    assert found is not None and found.upstream_name == "org/app"
    assert routes.match("dockerhubx/a") is None and routes.match("mirrors/other") is None
    assert routes.local_name("dockerhub/debian", b"") == "dockerhub/library/debian"
    assert routes.local_name("library/debian", b"ns=docker.io") == "dockerhub/library/debian"
    assert routes.local_name("debian", b"ns=index.docker.io") == "dockerhub/library/debian"
    assert routes.local_name("org/app", b"ns=ghcr.io") == "mirrors/ghcr/org/app"
    assert routes.local_name("org/app", b"ns=127.0.0.1%3A5001") == "local/org/app"
    assert routes.local_name("org/app", b"ns=quay.io") == "org/app"  # no such proxy: the name as it came
    assert routes.local_name("team/app", b"") == "team/app"
