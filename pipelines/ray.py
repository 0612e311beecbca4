"""Ray engine (Ray Data): schedules the shared task phases; holds no stage logic.

Tasks flow as rows: CPU stages in Ray tasks (any node), captioning in an actor pool (one model
per actor, images batched across the task's clips), then the write (in the CPU stages' own task
when nothing is captioned). Streaming execution means shards land while later tasks are still
being cut. A row is a ``pipelines.parcel``: the actors take the task as Arrow and read only its
clip records and frames; the clip bytes pass through them as an Arrow column that is never
copied into Python (measured: ``benchmarks/handoff.py``).

Where the caption actors go is the user's call, not the code's: ``num_gpus`` per actor (default
1 when the cluster has GPUs, so they land only on GPU nodes) and any custom resources
(``--caption-resource captioner=1``: only nodes started with that resource take them). Without
either, an actor asks for half a CPU so the pool never starves the CPU stages on a small machine.
Ray retries a task, or restarts an actor, whose worker process died; the phases are idempotent
(a task's shard names and bytes are deterministic), so a retry never duplicates a sample.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from pipelines import parcel
from pipelines import tasks as T
from pipelines.config import PrepareConfig
from pipelines.local_cluster import reaped_temp_dir
from pipelines.stages.caption import run_captioner
from pipelines.tasks import EngineUnavailable

log = logging.getLogger(__name__)
CPU_PER_TASK = 1.0
CPU_PER_CAPTIONER = 0.5
# A write is I/O (one task's samples into its shard), and it asks for no CPU: Ray Data's
# allocator reserves part of the cluster's CPUs for every operator that asks for any, and a
# write's reservation is kept from the CPU stages though writes rarely run. Measured: at 0.25
# CPU per write, 5 of 8 CPUs (1 of 2) ran CPU-stage tasks; at 0, all of them.
CPU_PER_WRITE = 0.0
MAX_BLOCKS = 4096
RESOURCE_WAIT_S = 60.0  # for nodes that are joining when the run starts


@dataclass(slots=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray bound to loopback
    num_cpus: int | None = None  # local Ray only
    caption_pool: int = 1  # caption actors (at most one per GPU when they ask for GPUs)
    caption_gpus: float | None = None  # per actor; None: 1 if the cluster has GPUs, else 0
    caption_resources: dict[str, float] = field(default_factory=dict)  # custom, per actor


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


def _process(row: dict[str, Any], cfg: PrepareConfig) -> dict[str, Any]:
    task = T.process(int(row["task_index"]), cfg)  # reads its rows from the staged manifest
    return {**parcel.pack(task), "cpu_node": _node()}


def _process_and_write(row: dict[str, Any], cfg: PrepareConfig) -> dict[str, Any]:
    """Both CPU phases in one task, where nothing is captioned between them."""
    stats = T.write(T.process(int(row["task_index"]), cfg), cfg)
    return _written(stats, _node(), "")


def _write(row: dict[str, Any], cfg: PrepareConfig) -> dict[str, Any]:
    stats = T.write(parcel.join(row["task"], row["payload"]), cfg)
    return _written(stats, row["cpu_node"], row.get("caption_node", ""))


def _written(stats: dict[str, Any], cpu_node: str, caption_node: str) -> dict[str, Any]:
    return {
        "task_index": stats["task"],
        "rows": stats["rows"],
        "written": stats["written"],
        "cpu_node": cpu_node,
        "caption_node": caption_node,
    }


class CaptionActor:
    """One captioner per actor, kept for the whole run. Takes parcels as an Arrow table (batch
    format ``pyarrow``) and returns it with the captioned clip records in place of ``task``, the
    frames dropped and every other column (the payload) the same Arrow data, never read."""

    def __init__(self, cfg: PrepareConfig) -> None:
        self.cfg = cfg
        self.captioner = run_captioner(cfg)
        self.node = _node()

    def __call__(self, batch: pa.Table) -> pa.Table:
        tasks = []
        for i in range(batch.num_rows):
            task = parcel.for_caption(
                binary_value(batch, "task", i),
                binary_value(batch, "frames", i),
                batch.column("frame_index")[i].as_py(),
            )
            tasks.append(T.caption(task, self.captioner, self.cfg).to_bytes())
        rest = batch.drop_columns(["task", *parcel.FRAME_COLUMNS])
        return rest.append_column("task", pa.array(tasks, pa.binary())).append_column(
            "caption_node", pa.array([self.node] * batch.num_rows, pa.string())
        )


def binary_value(table: pa.Table, name: str, row: int) -> Any:
    """Row ``row`` of a binary column as a buffer that views the column's memory.

    ``table.column(name)[row]`` copies the value (0.16 s for a 345 MB value, measured here); the
    caption actor reads frames of that size per task. Any layout other than (large) binary is
    read the plain way.
    """
    for chunk in table.column(name).chunks:
        if row >= len(chunk):
            row -= len(chunk)
            continue
        if not (pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type)):
            return chunk[row].as_py()
        width = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        _, offsets, data = chunk.buffers()
        bounds = np.frombuffer(offsets, dtype=width)[chunk.offset + row : chunk.offset + row + 2]
        start, end = int(bounds[0]), int(bounds[1])
        return data.slice(start, end - start) if data is not None and end > start else b""
    raise IndexError(f"row {row} is past the end of column {name!r}")


def init(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` or start a local Ray bound to loopback (no traffic leaves the host).

    A process already connected elsewhere is disconnected first: a run given ``--ray-address``
    must never quietly run on a left-over local instance. A local Ray goes with this process
    however it ends: its temp dir has a reaper (``local_cluster.reaped_temp_dir``), since Ray
    leaves its agents running for a minute after a driver killed alone (the OOM killer).
    """
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        if ray.is_initialized():
            ray.shutdown()
        try:
            _reachable(address)
            ray.init(address=address, log_to_driver=False)
        except ValueError as exc:  # Ray's own parse of a form _reachable let through
            raise EngineUnavailable(f"--ray-address {address!r}: {exc}".splitlines()[0]) from None
        except ConnectionError as exc:
            raise EngineUnavailable(
                f"no Ray cluster answers at {address} ({exc}); start one (`ray start --head`, "
                "docs/scale-out.md) or leave out --ray-address to run a local Ray"
            ) from exc
    elif not ray.is_initialized():
        kwargs["_temp_dir"] = reaped_temp_dir()
        log.info("ray: a local Ray, its logs under %s until this run ends", kwargs["_temp_dir"])
        ray.init(_node_ip_address="127.0.0.1", num_cpus=num_cpus, **kwargs)


def cpu_per_task(nodes: list[dict[str, Any]], cpu_actor: bool = True) -> float:
    """CPUs a CPU-stage task asks for: one, unless no node could then hold a task beside a
    CPU caption actor (``cpu_actor``, on a 1-CPU node), where a task waiting for a whole CPU
    would wait forever. Without a CPU actor a 1-CPU node runs one task at a time, not two
    half-CPU tasks on its one core."""
    biggest = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    beside = CPU_PER_CAPTIONER if cpu_actor else 0.0
    if biggest >= CPU_PER_TASK + beside:
        return CPU_PER_TASK
    return max(0.1, biggest - beside)


def parse_address(address: str) -> tuple[str | None, int | None]:
    """``HOST:PORT``, ``ray://HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); ``auto`` -> (None,
    None); anything else is a one-line ``EngineUnavailable`` (not Ray's ValueError traceback)."""
    if address == "auto":
        return None, None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "[" in host:
        raise EngineUnavailable(
            f"--ray-address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379), "
            "ray://HOST:PORT, [IPv6]:PORT or auto"
        )
    return host, int(port)


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at HOST:PORT (Ray retries for long)."""
    host, port = parse_address(address)
    if host is None:
        return  # "auto": Ray finds the running cluster itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"{host}:{port}: {exc.strerror or exc}") from exc


def caption_gpus(opts: RayOptions, cluster_gpus: float) -> float:
    """GPUs per caption actor: ``--caption-gpus``, else one where the cluster has GPUs."""
    return opts.caption_gpus if opts.caption_gpus is not None else (1.0 if cluster_gpus else 0.0)


def caption_placement(
    opts: RayOptions,
    cluster_gpus: float,
    cluster_cpus: float | None = None,
    task_cpus: float = CPU_PER_TASK,
) -> tuple[dict[str, Any], int]:
    """Ray resource arguments for one caption actor, and how many actors to start.

    The pool never takes the CPUs the other phases need: actors that ask for CPUs are capped so
    one CPU-stage task still fits beside them (``cluster_cpus``; None: no cap).
    Ray Data starts the whole pool before feeding it, so 4 half-CPU actors on 2 CPUs left no
    room for a single task and the run waited forever. Asking for more GPUs per actor than the
    cluster has is an ``EngineUnavailable``: no actor could ever start.
    """
    gpus = caption_gpus(opts, cluster_gpus)
    args: dict[str, Any] = {}
    if gpus:
        args["num_gpus"] = gpus
    else:
        args["num_cpus"] = CPU_PER_CAPTIONER
    if opts.caption_resources:
        args["resources"] = dict(opts.caption_resources)
    actors = max(1, opts.caption_pool)
    if gpus and cluster_gpus < gpus:
        raise EngineUnavailable(
            f"the caption actors ask for {gpus:g} GPU(s) each (--caption-gpus) but the Ray "
            f"cluster has {cluster_gpus:g}; pass --caption-gpus 0 to caption on CPUs"
        )
    if gpus:  # one model per GPU share: never more actors than fit
        actors = max(1, min(actors, int(cluster_gpus / gpus)))
    elif cluster_cpus is not None:
        room = cluster_cpus - task_cpus - CPU_PER_WRITE
        fit = max(1, int(room / CPU_PER_CAPTIONER + 1e-9))
        if actors > fit:
            log.warning(
                "ray: --caption-pool %d capped to %d: %d CPU(s) must also run the CPU stages",
                actors,
                fit,
                cluster_cpus,
            )
            actors = fit
    return args, actors


def run(plan: T.Plan, opts: RayOptions | None = None) -> dict[str, Any]:
    """Run the plan's tasks; return where they ran (node ids -> tasks) for the run's log."""
    opts = opts or RayOptions()
    if not plan.tasks:
        return {}
    init(opts.address, opts.num_cpus)
    try:
        return _run(plan, opts)
    finally:
        if opts.address:
            ray.shutdown()


def _run(plan: T.Plan, opts: RayOptions) -> dict[str, Any]:
    # Ray Data logs a progress table per operator every few seconds; our bar already shows rows.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"
    cfg = plan.cfg
    wanted = list(opts.caption_resources) if cfg.captioner != "none" else []
    if cfg.captioner != "none" and opts.caption_gpus and opts.address:
        wanted.append("GPU")  # a GPU node may still be joining; a local Ray has what it has
    resources = _wait_for_resources(wanted)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    missing = [r for r in wanted if r not in resources]
    if missing:
        raise EngineUnavailable(
            f"no node of the Ray cluster offers {', '.join(missing)} (asked by --caption-resource)"
            f" after {RESOURCE_WAIT_S:.0f} s; start one with: ray start --address ... "
            f"--resources '{{\"{missing[0]}\": 1}}'"
        )
    # Only indices travel; a block per task keeps small runs parallel, the cap keeps Ray's
    # scheduler sane at 100k tasks (a block then holds a few indices, run one after another).
    ds = ray.data.from_items(
        [{"task_index": i} for i in plan.tasks],
        override_num_blocks=min(len(plan.tasks), MAX_BLOCKS),
    )
    cpu_actor = cfg.captioner != "none" and not caption_gpus(opts, resources.get("GPU", 0))
    task_cpus = cpu_per_task(nodes, cpu_actor)
    if cfg.captioner == "none":
        # One task per shard task, not two: a write task needs a worker process of its own
        # beside the busy ones, which Ray starts and, idle a second later, ends again.
        ds = ds.map(_process_and_write, fn_kwargs={"cfg": cfg}, num_cpus=task_cpus)
    else:
        ds = ds.map(_process, fn_kwargs={"cfg": cfg}, num_cpus=task_cpus)
        caption_args, actors = caption_placement(
            opts, resources.get("GPU", 0), resources.get("CPU", 0.0), task_cpus
        )
        log.info("ray: %d nodes; %d caption actors, each with %s", len(nodes), actors, caption_args)
        ds = ds.map_batches(
            CaptionActor,
            fn_constructor_kwargs={"cfg": cfg},
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            **caption_args,
        )
        ds = ds.map(_write, fn_kwargs={"cfg": cfg}, num_cpus=CPU_PER_WRITE)
    cpu_nodes: Counter[str] = Counter()
    caption_nodes: Counter[str] = Counter()
    for row in ds.iter_rows():
        cpu_nodes[row["cpu_node"]] += 1
        if row["caption_node"]:
            caption_nodes[row["caption_node"]] += 1
    placement = {"nodes": len(nodes), "cpu": dict(cpu_nodes), "caption": dict(caption_nodes)}
    log.info(
        "ray: CPU stages ran on %d node(s) %s; captioning on %d node(s) %s",
        len(cpu_nodes),
        _short(cpu_nodes),
        len(caption_nodes),
        _short(caption_nodes),
    )
    return placement


def _wait_for_resources(names: list[str]) -> dict[str, float]:
    """The cluster's resources, once every name in ``names`` is there (a node that just joined
    may not be registered yet) or after ``RESOURCE_WAIT_S``."""
    deadline = time.monotonic() + RESOURCE_WAIT_S
    while True:
        resources = ray.cluster_resources()
        if all(n in resources for n in names) or time.monotonic() > deadline:
            return resources
        log.info("ray: waiting for a node that offers %s", ", ".join(names))
        time.sleep(2.0)


def _short(counts: Counter[str]) -> str:
    return ", ".join(f"{node[:8]}: {n} tasks" for node, n in sorted(counts.items())) or "-"
