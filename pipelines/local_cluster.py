"""A real multi-node Ray cluster on one machine: ``ray start --head`` plus ``ray start --address``.

For the tests and benchmarks of ``--ray-address``, and for trying cluster flags on a laptop
before a cluster. Every node is a separate raylet with its own CPUs and custom resources, exactly
as on a cluster; they only share a host. All of them use the loopback address 127.0.0.2:
``ray start`` turns 127.0.0.1 into the host's outward address, but the rest of 127/8 is loopback
too and passes through unchanged, so no traffic leaves the machine. Token authentication is off
(``RAY_AUTH_MODE=disabled``) for the same reason: nothing but this host can reach it.

Stopping kills exactly this cluster's processes (found by its own temp dir), never another Ray
running on the machine, which ``ray stop`` would.

    with LocalRayCluster([{"cpus": 1}, {"cpus": 1, "resources": {"captioner": 1}}]) as c:
        subprocess.run(["clipvip", "prepare", ..., "--ray-address", c.address], env=c.env)

Also the reaper of the single-node Ray that ``prepare --runner ray`` starts with ``ray.init``
(``reaped_temp_dir``). Ray ties the processes ``ray.init`` spawns (GCS, raylet, dashboard,
monitors) to the driver with ``PR_SET_PDEATHSIG``, but the raylet's own children only notice
their raylet is gone: when the driver alone is SIGKILLed (the OOM killer's choice), measured
here, its busy workers go within 2-3 s, a worker still starting in 26 s, and the dashboard and
runtime-env agents after 60-61 s (each first tries for 60 s to tell the dead GCS, a timeout fixed
in Ray). The reaper follows Ray's own ``ray_process_reaper`` (a child that reads a pipe from the
driver and acts on EOF) but kills by temp dir, not by process group: Ray's workers lead their
own groups, and the driver's group may hold the user's other commands (``| tee log``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

HOST = "127.0.0.2"
OBJECT_STORE_BYTES = 200 * 1024 * 1024  # per node; Ray's default is 30% of RAM, per node
_REAPER_PIPES: list[int] = []  # write ends, open until this process ends, however it ends


@dataclass(slots=True)
class Node:
    node_id: str
    raylet_pid: int
    resources: dict[str, float]

    def workers(self) -> list[psutil.Process]:
        """The node's worker processes (``ray::...``: tasks, actors, idle workers)."""
        try:
            children = psutil.Process(self.raylet_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for p in children:
            try:
                title = p.cmdline()[:1]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if title and title[0].startswith("ray::"):
                out.append(p)
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """Start ``len(nodes)`` Ray nodes (the first is the head); a context manager that stops them.

    Each node spec: ``{"cpus": int, "gpus": int (optional), "resources": {name: amount}}``.
    """

    def __init__(self, nodes: list[dict[str, Any]], start_timeout_s: float = 60.0) -> None:
        if not nodes:
            raise ValueError("a cluster needs at least a head node")
        self.specs = nodes
        self.timeout = start_timeout_s
        self.port = _free_port()
        self.address = f"{HOST}:{self.port}"
        self.temp_dir = tempfile.mkdtemp(prefix="clipvip-ray-")  # short: sockets live under it
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self._ray = str(Path(sys.executable).with_name("ray"))

    def __enter__(self) -> LocalRayCluster:
        try:
            for i, spec in enumerate(self.specs):
                self._start(spec, head=i == 0)
            self._wait_for_nodes()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, spec: dict[str, Any], head: bool) -> None:
        args = [
            self._ray,
            "start",
            f"--node-ip-address={HOST}",
            f"--num-cpus={spec.get('cpus', 1)}",
            f"--num-gpus={spec.get('gpus', 0)}",
            f"--resources={json.dumps(spec.get('resources', {}))}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--dashboard-agent-listen-port={_free_port()}",
            "--disable-usage-stats",
        ]
        if head:
            args += [
                "--head",
                f"--port={self.port}",
                f"--ray-client-server-port={_free_port()}",
                f"--temp-dir={self.temp_dir}",
                "--include-dashboard=false",
            ]
        else:
            args += [f"--address={self.address}"]
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(args)}` failed:\n{done.stdout}\n{done.stderr}")

    def _wait_for_nodes(self) -> None:
        deadline = time.monotonic() + self.timeout
        while len(self.nodes()) < len(self.specs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.nodes())}/{len(self.specs)} Ray nodes came up")
            time.sleep(0.2)

    def _processes(self) -> list[psutil.Process]:
        mine = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            # The Ray client server's command line names the address but not the temp dir.
            if self.temp_dir in cmd or f"--address={self.address}" in cmd:
                mine.append(p)
        return mine

    def nodes(self) -> list[Node]:
        """This cluster's nodes as their raylets state them (id, static resources, pid)."""
        out = []
        for p in self._processes():
            args = p.info["cmdline"] or []
            if not args or not args[0].endswith("raylet"):
                continue
            flags = dict(a[2:].split("=", 1) for a in args[1:] if a.startswith("--") and "=" in a)
            items = flags.get("static_resource_list", "").split(",")
            resources = {k: float(v) for k, v in zip(items[::2], items[1::2], strict=False)}
            out.append(Node(flags.get("node_id", ""), p.pid, resources))
        return out

    def stop(self) -> None:
        """SIGKILL this cluster's processes and their children; remove its temp dir."""
        _kill_trees(self._processes())
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _kill_trees(processes: list[psutil.Process]) -> None:
    """SIGKILL ``processes`` and all their children; wait (10 s at most) until they are gone."""
    victims: dict[int, psutil.Process] = {}
    for p in processes:
        victims[p.pid] = p
        try:
            for c in p.children(recursive=True):
                victims[c.pid] = c
        except psutil.NoSuchProcess:
            continue
    for p in victims.values():
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(list(victims.values()), timeout=10)


def reaped_temp_dir() -> str:
    """A new temp dir for a local Ray (``ray.init(_temp_dir=...)``), and a reaper that, once
    this process has ended (returned, raised or been SIGKILLed alone), kills every process still
    writing a file under it and removes it.

    Every Ray process writes its logs under the temp dir from its start (workers: their stdout
    and stderr), so it finds them all after the raylet that spawned them has died; their titles
    and environments it cannot use (``setproctitle`` overwrites both for the agents). The reaper
    starts a session of its own, so a signal to the driver's group does not end it before its work.
    """
    temp_dir = tempfile.mkdtemp(prefix="clipvip-ray-")  # short: Ray's sockets live under it
    read, write = os.pipe()  # both close-on-exec: no Ray process inherits the write end
    try:
        subprocess.Popen(
            [sys.executable, "-m", "pipelines.local_cluster", "reap", temp_dir],
            stdin=read,
            stdout=subprocess.DEVNULL,  # never hold the driver's output open (a caller's pipe)
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(read)
    _REAPER_PIPES.append(write)
    return temp_dir


def writing_under(root: str) -> list[psutil.Process]:
    """The processes (but this one) that hold a file under ``root`` open for writing."""
    root = os.path.join(os.path.realpath(root), "")
    found = []
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        try:
            files = p.open_files()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if any(f.path.startswith(root) and f.mode != "r" for f in files):
            found.append(p)  # a reader (``tail -f`` on a log) is left alone
    return found


def _reap(temp_dir: str, rounds: int = 5) -> None:
    while os.read(0, 1 << 16):  # EOF: the process that started the local Ray has ended
        continue
    # Another round for a worker the raylet spawned while the driver was being torn down.
    for _ in range(rounds):
        found = writing_under(temp_dir)
        if not found:
            break
        _kill_trees(found)
    shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["reap"] and len(sys.argv) == 3:
        _reap(sys.argv[2])
    else:
        sys.exit("usage: python -m pipelines.local_cluster reap TEMP_DIR")
