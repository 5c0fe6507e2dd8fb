"""Start cargohold, Distribution and nginx on free loopback ports with fresh storage; watch their memory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .httpc import Connection

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
#: Debian installs it outside a normal user's PATH
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin") or "nginx"


def machine_busy() -> int:
    """Busy jiffies of all CPUs so far (everything but idle and iowait)."""
    with open("/proc/stat") as file:
        fields = [int(v) for v in file.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def settle(quiet: float = 0.5, most: float = 5.0) -> None:
    """Wait until the machine's CPUs were busy under 5% of ``quiet`` seconds (at most ``most`` seconds): a server
    that just started is still starting workers, and files just deleted are still being freed, work that would
    land in the next measurement."""
    capacity = quiet * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        before = machine_busy()
        time.sleep(quiet)
        if machine_busy() - before < 0.05 * capacity:
            return


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_tools(need_skopeo: bool) -> list[str]:
    """What the benchmark needs and does not find, each with how to get it."""
    missing = []
    for tool, package in (("docker-registry", "docker-registry"), ("wrk", "wrk"), ("hey", "hey"),
                          (NGINX, "nginx-light")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install {package})")
    if need_skopeo and shutil.which("skopeo") is None:
        missing.append("skopeo (apt-get install skopeo)")
    try:
        import granian  # noqa: F401
        import httpx  # noqa: F401
    except ImportError as exc:
        missing.append(f"python package {exc.name} (pip install -e . into {sys.prefix})")
    return missing


@dataclass
class Server:
    """A registry process under test."""

    name: str  # "cargohold", "distribution" or "nginx"
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    published: Path | None = None
    #: Distribution only: its ``storage`` section's driver lines (YAML, indented two spaces); default filesystem
    distribution_storage: str | None = None
    #: nginx only: the ``http`` block's servers (and upstreams) for this server, in place of the static file
    #: server (see ``_nginx_argv``); given the server, whose address is known once it starts
    nginx_sites: Callable[[Server], str] | None = None

    host = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connection(self) -> Connection:
        return Connection(self.host, self.port)

    def start(self) -> Server:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.port = free_port()
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - the child owns it
        if self.name == "cargohold":
            env = {**os.environ, "PYTHONPATH": str(SRC)}
            argv = [sys.executable, "-m", "cargohold.cli.main", "serve", "--listen", self.address,
                    "--data-dir", str(self.workdir / "data"), *self.extra_args]
        elif self.name == "nginx":
            argv, env = self._nginx_argv(), dict(os.environ)
        else:
            config = self.workdir / "distribution.yml"
            config.write_text(
                "version: 0.1\n"
                "log: {level: info}\n"
                "storage:\n"
                + (self.distribution_storage or f"  filesystem: {{rootdirectory: {self.workdir / 'data'}}}\n") +
                "  delete: {enabled: true}\n"
                "  cache: {blobdescriptor: inmemory}\n"
                "http:\n"
                f"  addr: {self.address}\n"
                "  secret: cargohold-bench-secret\n"
            )
            env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # aws-sdk-go panics on it
            argv = ["docker-registry", "serve", str(config)]
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
            try:
                with self.connection() as conn:
                    if conn.request("GET", "/v2/").status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer on {self.address}")

    def _nginx_argv(self) -> list[str]:
        """nginx in the foreground from a generated config: its own prefix, pid and logs, no system service.

        It serves files under ``www/`` (see ``publish``) with sendfile, as a static file server would
        serve a blob; ``/v2/`` answers 200 so that ``start`` can wait for it like for the registries.
        ``nginx_sites`` replaces that server (a proxy's ``/v2/`` answers as its upstream's does).
        """
        www = self.workdir / "www"
        (www / "v2").mkdir(parents=True)
        (www / "v2" / "index.html").write_bytes(b"")
        config = self.workdir / "nginx.conf"
        # as root nginx's workers would switch to nobody, who cannot enter a private temporary directory
        user = "user root;\n" if os.geteuid() == 0 else ""
        config.write_text(
            user +
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes auto;\n"
            f"pid {self.workdir / 'nginx.pid'};\n"
            f"error_log {self.workdir / 'error.log'} warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "  access_log off;\n"
            "  sendfile on;\n"
            "  tcp_nopush on;\n"
            "  default_type application/octet-stream;\n"
            f"  client_body_temp_path {self.workdir / 'tmp'};\n"
            f"  proxy_temp_path {self.workdir / 'tmp'};\n"
            f"  fastcgi_temp_path {self.workdir / 'tmp'};\n"
            f"  uwsgi_temp_path {self.workdir / 'tmp'};\n"
            f"  scgi_temp_path {self.workdir / 'tmp'};\n"
            + (self.nginx_sites(self) if self.nginx_sites else f"  server {{ listen {self.address}; root {www}; }}\n")
            + "}\n"
        )
        return [NGINX, "-p", str(self.workdir), "-c", str(config), "-e", str(self.workdir / "error.log")]

    def publish(self, source: Path, target: str) -> None:
        """nginx only: serve a copy of ``source`` at the URL path ``target`` (a registry's blob URL),
        in place of the file published before."""
        if self.published is not None:
            self.published.unlink(missing_ok=True)
        self.published = self.workdir / "www" / target.lstrip("/")
        self.published.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, self.published)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> list[int]:
        """The server process and its descendants (granian's workers)."""
        if self.process is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process tree so far (exited threads included)."""
        ticks = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> tuple[int, int]:
        """(sum over the process tree, largest single process) resident set size."""
        sizes = []
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as file:
                    for line in file:
                        if line.startswith("VmRSS:"):
                            sizes.append(int(line.split()[1]) * 1024)
            except OSError:
                continue
        return sum(sizes), max(sizes, default=0)

    def pss_bytes(self) -> int:
        """Proportional set size summed over the process tree: pages shared between its processes
        (the interpreter, its libraries) counted once, not once per process as in the RSS sum."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as file:
                    for line in file:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total


class RssSampler:
    """Samples a server's RSS every ``interval`` seconds in a thread; keeps the peaks."""

    def __init__(self, server: Server, interval: float = 0.05):
        self.server, self.interval = server, interval
        self.peak_total = self.peak_process = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total, largest = self.server.rss_bytes()
            self.peak_total, self.peak_process = max(self.peak_total, total), max(self.peak_process, largest)
            self.peak_pss = max(self.peak_pss, self.server.pss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
