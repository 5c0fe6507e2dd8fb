"""nginx as a round-robin load balancer in front of registry replicas, on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port, stop_process, wait_for_http

#: the balancer the README's "Running at scale" shows: round-robin, no sticky sessions, bodies of any size
#: streamed to the replica as they arrive
CONFIG = """\
worker_processes 1;
daemon off;
user {user};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$upstream_addr';
    access_log {root}/upstream.log upstream;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream registry {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_read_timeout 900s;
        proxy_send_timeout 900s;
        location / {{
            proxy_pass http://registry;
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    #: ``host:port`` of each replica behind it
    replicas: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def upstreams(self) -> list[str]:
        """The replica (``host:port``) of each request so far that reached one, from the access log, oldest first
        (a request retried on the next replica names both)."""
        log = self.root / "upstream.log"
        names = log.read_text().replace(",", " ").split() if log.exists() else []
        return [name for name in names if name != "-"]

    def stop(self) -> None:
        stop_process(self.process)


@contextlib.contextmanager
def nginx(root: Path, replicas: Sequence[str]) -> Iterator[Nginx]:
    """nginx on a free port sending requests to ``replicas`` (``host:port``) in turn."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    servers = "\n".join(f"        server {replica};" for replica in replicas)
    user = "root" if os.geteuid() == 0 else ""
    text = CONFIG.format(root=root, port=port, servers=servers, user=user)
    if not user:
        text = text.replace("user ;\n", "")
    (root / "nginx.conf").write_text(text)
    log = open(root / "nginx.out", "ab")  # noqa: SIM115 - the child process owns it
    process = subprocess.Popen([binary, "-p", str(root), "-c", str(root / "nginx.conf")],
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    server = Nginx(root, port, process, list(replicas))
    try:
        wait_for_http(f"{server.url}/v2/", process)
        yield server
    finally:
        server.stop()
