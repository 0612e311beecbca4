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
        victims: dict[int, psutil.Process] = {}
        for p in self._processes():
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
        shutil.rmtree(self.temp_dir, ignore_errors=True)
