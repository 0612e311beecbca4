"""``prepare --runner ray --ray-address`` on a real two-node Ray cluster started by the test.

Node 1 (the head) offers one CPU; node 2 one CPU and a custom ``captioner`` resource. The run asks
for ``--caption-resource captioner=1``, so the caption actors may only live on node 2. What the
tests check is observed from outside Ray (the raylets' own command lines and process trees), not
taken from what the engine says about itself.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.commands import prepare_command
from pipelines.config import PrepareConfig
from pipelines.local_cluster import LocalRayCluster
from pipelines.prepare import EngineOptions, prepare

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("CLIPVIP_FAULT_SEED", "0"))
SOURCES = ["h264", "h264_long", "mpeg4_avi", "vp9_webm", "corrupt"]
ROWS = 10
GOOD = 8  # the two "corrupt" rows fail at probe


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster([{"cpus": 1}, {"cpus": 1, "resources": {"captioner": 1}}]) as c:
        yield c


@pytest.fixture(scope="module")
def manifest(videos, tmp_path_factory):
    rows = [
        {"key": f"r{i:02d}", "video": str(videos[SOURCES[i % 5]]), "text": f"row {i}"}
        for i in range(ROWS)
    ]
    path = tmp_path_factory.mktemp("ray_cluster") / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cfg(out: Path) -> PrepareConfig:
    return PrepareConfig(out=str(out), shard_size=1, frame_short_side=64, captioner="random-tiny")


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    """The same manifest through the plain in-process loop: what every engine must write."""
    out = tmp_path_factory.mktemp("ray_cluster_ref") / "out"
    summary = prepare(str(manifest), _cfg(out), EngineOptions(runner="local"), progress=False)
    assert (summary["samples"], summary["failed"]) == (GOOD, ROWS - GOOD)
    return out


def _cli(manifest: Path, out: Path, cluster: LocalRayCluster) -> list[str]:
    cfg = _cfg(out)
    return prepare_command(
        manifest,
        out,
        "--shard-size",
        str(cfg.shard_size),
        "--frame-short-side",
        str(cfg.frame_short_side),
        "--captioner",
        cfg.captioner,
        "--runner",
        "ray",
        "--ray-address",
        cluster.address,
        "--caption-resource",
        "captioner=1",
        "--no-progress",
    )


def _start(manifest: Path, out: Path, cluster: LocalRayCluster) -> subprocess.Popen:
    return subprocess.Popen(
        _cli(manifest, out, cluster),
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}


def _ours(cluster: LocalRayCluster) -> list[tuple[str, str, int]]:
    """(node id, process title, pid) of every worker process running our phases right now."""
    found = []
    for node in cluster.nodes():
        for p in node.workers():
            try:
                title = p.cmdline()[0]
            except Exception:  # exited between listing and reading
                continue
            if title.startswith(("ray::Map(", "ray::MapWorker(")):
                found.append((node.node_id, title, p.pid))
    return found


def test_cpu_stages_run_on_every_node_and_captioning_only_where_the_resource_is(
    cluster, manifest, reference, tmp_path
):
    (captioner_node,) = [n.node_id for n in cluster.nodes() if n.resources.get("captioner")]
    out = tmp_path / "out"
    proc = _start(manifest, out, cluster)
    seen: set[tuple[str, str]] = set()
    while proc.poll() is None:
        seen |= {(node, title) for node, title, _ in _ours(cluster)}
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr.decode()[-3000:]
    log = stderr.decode()[-3000:]
    caption_nodes = {node for node, title in seen if "CaptionActor" in title}
    assert caption_nodes == {captioner_node}, f"caption actors only where the resource is:\n{log}"
    cpu_nodes = {node for node, title in seen if title.startswith("ray::Map(_process")}
    assert cpu_nodes == {n.node_id for n in cluster.nodes()}, f"CPU stages on any node:\n{log}"
    assert f"captioning on 1 node(s) {captioner_node[:8]}" in log
    assert "ray: 2 nodes" in stdout.decode(), log
    assert _files(out) == _files(reference), "the cluster writes the plain loop's bytes"


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    cluster, manifest, reference, tmp_path, fault_report
):
    out = tmp_path / "out"
    proc = _start(manifest, out, cluster)
    rng = random.Random(SEED)
    victim = None
    deadline = time.monotonic() + 240
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        candidates = sorted(_ours(cluster), key=lambda c: (c[1], c[2]))
        if list((out / "stats").glob("*.json")) and candidates:  # mid-run: some tasks done
            victim = rng.choice(candidates)
            os.kill(victim[2], signal.SIGKILL)
        time.sleep(0.05)
    assert victim is not None, "the run ended before a worker could be killed"
    fault_report.append(f"ray worker killed (seed {SEED}): {victim[1]} on node {victim[0][:8]}")
    assert not (out / "stats.json").exists(), "the kill landed before the run finished"
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"killed {victim[1]}:\n" + stderr.decode()[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["complete"] and stats["rows_done"] == ROWS
    assert (stats["samples"], stats["failed"]) == (GOOD, ROWS - GOOD), f"killed {victim[1]}"
    assert len((out / "errors.jsonl").read_text().splitlines()) == ROWS - GOOD
    assert _files(out) == _files(reference), "every sample once, byte for byte"
