"""How a job reaches this registry: a token of the server's own for the job's repository only, none under
``auth: none``, and under ``auth: htpasswd`` a run that fails saying why instead of trying."""

from __future__ import annotations

import time

from cargohold.auth.access import Access
from cargohold.auth.jwt import Verifier
from cargohold.auth.keys import new_private_key, parse_signing_key, private_pem
from cargohold.config import ServerConfig
from cargohold.config.sections import AuthSection, ServerSection
from cargohold.mirror.local import LocalRegistry
from cargohold.mirror.model import MirrorJob, MirrorRun
from cargohold.mirror.run import run_job
from tests.support.servers import free_port


def test_the_token_names_the_job_repository_only() -> None:
    key = parse_signing_key(private_pem(new_private_key()), "test key")
    config = ServerConfig(server=ServerSection(listen="0.0.0.0:5005"),
                          auth=AuthSection(mode="token", issuer="me", service="registry"))
    local = LocalRegistry.of(config, key)
    assert local.address == "127.0.0.1:5005" and not local.tls
    assert local.mint is not None
    wanted = [Access("repository", "mirror/library/app", "pull"), Access("repository", "mirror/library/app", "push")]
    verifier = Verifier("registry")
    verifier.trust("me", [key.public])
    verified = verifier.verify(local.mint(wanted))
    assert verified.accesses == frozenset(wanted) and verified.subject == ""
    assert LocalRegistry.of(ServerConfig(), None).mint is None  # auth none: nothing to send


def test_under_htpasswd_a_run_with_a_local_end_fails_saying_why() -> None:
    config = ServerConfig(server=ServerSection(listen=f"127.0.0.1:{free_port()}"),
                          auth=AuthSection(mode="htpasswd", htpasswd="/nonexistent"))
    job = MirrorJob("out", "local/team/app", "127.0.0.1:9/copies")
    done = run_job(job, LocalRegistry.of(config, None), MirrorRun("out", "command", time.time()))
    assert list(done.errors) == [""] and "htpasswd" in done.errors[""] and done.copied == {}
