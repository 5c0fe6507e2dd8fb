"""The ``edit`` phase: ``cargohold mutate`` and ``cargohold index create`` on the many-layer image, against cargohold.

The clients phase's image (``layers`` random layers of ``layer_size`` bytes: 64 of 4 MiB) is pushed once into a
cargohold of its own. Each run then times three commands, the whole command as a user runs it (interpreter
start included):

- ``mutate`` of the image to a new tag (a label changed): one config read and uploaded, one manifest written;
- ``index create`` over the mutated image in its own repository: one config read, one index written;
- ``index create`` in a repository of its own: the image's 65 blobs mounted there, its manifest copied, the index
  written.

None of them moves a layer: the server's access log is read after every command, and a GET of a layer, a PATCH,
or an upload finished by a PUT fails the phase (the one blob uploaded, the new config, goes in one POST).
Target: each under a second.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import proxy, workloads
from .servers import Server
from .table import cell
from .workloads import Sizes

if TYPE_CHECKING:
    from .run import Results

A = "cargohold"
IMAGE = "bench/edit"
MUTATE, INDEX_SAME, INDEX_OTHER = "mutate", "index create, same repository", "index create, another repository"
COMMANDS = (MUTATE, INDEX_SAME, INDEX_OTHER)
#: the whole command (a new interpreter), and the library call alone in this process (a new client each time)
CLI, LIBRARY = "cli", "library"
#: seconds each command may take
TARGET_S = 1.0


def served(server: Server) -> list[dict[str, object]]:
    """The requests in cargohold's access log (one JSON object per line) so far."""
    found = []
    for line in (server.workdir / "server.log").read_text(errors="replace").splitlines():
        if line.startswith('{"method"'):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def mark(server: Server) -> int:
    """How many requests the access log holds, once a request sent now shows in it (the log is written late)."""
    name = f"bench/mark-{uuid.uuid4().hex[:8]}"
    with server.connection() as conn:
        conn.request("GET", f"/v2/{name}/tags/list")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        requests = served(server)
        if any(name in str(r["path"]) for r in requests):
            return len(requests)
        time.sleep(0.02)
    raise RuntimeError("the server's access log never showed the marker request")


def layer_traffic(requests: list[dict[str, object]], layers: set[str]) -> list[dict[str, object]]:
    """The requests that read a layer or sent blob bytes other than in one POST (a config's upload)."""
    def moves(method: object, path: str) -> bool:
        if method == "GET":
            return path.rpartition("/blobs/")[2] in layers
        return method == "PATCH" or (method == "PUT" and "/blobs/uploads/" in path)

    return [r for r in requests if moves(r["method"], str(r["path"]))]


def _call(args: list[str]) -> float:
    """Seconds the library call behind the command ``args`` takes, with a new client (its ping included)."""
    from cargohold.client import Reference, RegistryClient, StaticKeychain
    from cargohold.client.index_edit import index_create
    from cargohold.client.keychain import Credentials
    from cargohold.client.mutate import ConfigChanges, mutate

    started = time.perf_counter()
    with RegistryClient(keychain=StaticKeychain(Credentials(), registries=[])) as client:
        if args[0] == "mutate":
            label, _, value = args[5].partition("=")
            mutate(client, Reference.parse(args[1]), ConfigChanges(labels={label: value}), tag=Reference.parse(args[3]))
        else:
            index_create(client, Reference.parse(args[2]), [Reference.parse(args[3])])
    return time.perf_counter() - started


def _layers(layout: Path) -> set[str]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return {layer["digest"] for layer in manifest["layers"]}


def phase_edit(work: Path, sizes: Sizes, runs: int, results: Results, say: Callable[[str], None]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    server = Server(A, work / A)
    scratch = work / "scratch"
    try:
        server.start()
        layout = proxy.make_layout(work / "image", sizes)
        layers = _layers(layout)
        workloads.client_push("cargohold", layout, server, IMAGE, scratch)
        argv, env = workloads.cargohold_cli()
        host = server.address
        for run in range(runs):
            say(f"edit: run {run + 1}/{runs}")
            for way in (CLI, LIBRARY) if run % 2 == 0 else (LIBRARY, CLI):
                mutated = f"{host}/{IMAGE}:{way}{run}"
                commands = {
                    MUTATE: ["mutate", f"{host}/{IMAGE}:latest", "--tag", mutated,
                             "--label", f"bench.run={way}{run}"],
                    INDEX_SAME: ["index", "create", f"{host}/{IMAGE}:{way}-index{run}", mutated],
                    INDEX_OTHER: ["index", "create", f"{host}/bench/edit-{way}{run}:latest", mutated],
                }
                for which, args in commands.items():
                    before = mark(server)
                    seconds = workloads.timed([*argv, *args], env).seconds if way == CLI else _call(args)
                    moved = layer_traffic(served(server)[before : mark(server)], layers)
                    if moved:
                        raise RuntimeError(f"{which} moved layer bytes: {moved[:3]}")
                    results.add("edit", way, which, seconds)
        results.notes["edit"] = {"layers": sizes.layers, "layer_bytes": sizes.layer_size}
    finally:
        server.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work / "image", ignore_errors=True)


def render(results: Results) -> list[str]:
    data = results.samples.get("edit", {})
    notes = results.notes.get("edit")
    if not data or not isinstance(notes, dict):
        return []
    out = [f"\n### Editing an image in the registry: mutate and index create\n\n"
           f"{notes['layers']} layers of {notes['layer_bytes'] / 2**20:g} MiB in cargohold. Command: the wall time "
           f"of the whole `cargohold` command (a new interpreter: its start and imports included); library call: "
           f"the same work from Python, a new client each time. No layer moved: the server's access log shows no GET "
           f"of a layer and no upload but the new config's.\n",
           "| operation | command | library call | target | |", "|---|---|---|---|---|"]
    for which in COMMANDS:
        command, call = data.get(CLI, {}).get(which), data.get(LIBRARY, {}).get(which)
        status = ""
        if command:
            status = "met" if max(command) < TARGET_S else "**not met**"
        out.append(f"| {which} | {cell(command, 's')} | {cell(call, 's')} | command < {TARGET_S:g} s | {status} |")
    return out
