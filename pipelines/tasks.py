"""Units of work and the one shared way to run them (what datatrove calls ``run_for_rank``).

A run cuts the manifest into tasks of ``shard_size`` consecutive rows, staged once into the
output folder (``pipelines.staging``) so that engines carry task indices, never rows. Task ``i``
writes
``shards/{name}-{i:06d}.tar`` (plus ``-1``, ``-2`` parts if ``shard_bytes`` overflows) and then,
last, ``stats/{i:06d}.json`` with its counts and every failed row. That stats file is the task's
completion marker: a rerun skips tasks that have one and redoes the rest from scratch, which
rewrites the same shard names with the same bytes, so no sample is ever lost or duplicated.

Engines only schedule the three phases below (``process``: CPU stages; ``caption``: the model;
``write``), or all at once with ``run_task``.

``--retry-failed`` (``retry_stages``) reruns finished tasks that recorded failures in the given
stages (a video that was missing, a timeout on an overloaded node, a flaky bucket): their
stats file moves to ``retry/`` so they are pending again. Such a task redoes only those rows:
the samples its earlier attempt wrote are copied from its tars byte for byte (``carried``) and
its other failures stand, so a retry of 1% failed rows costs about 1% of the first run.

Whenever a task writes, it removes its parts numbered past the ones it wrote (left by an attempt
that wrote more: a retry whose rows fail now, a killed attempt whose flaky rows worked), so a
glob of the folder sees exactly the samples of the index.

Each start of a task's CPU phase is counted in ``attempts/{i:06d}`` (removed once every task
has finished; the count stays in the task's stats file). A task that was started
before and never finished (its worker died, or the whole run was killed) runs its rows isolated
in a child process on the next attempt (``pipelines.isolation``), so a row that crashes the
decoder fails alone instead of killing every retry of its task.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec

from captioner import Captioner
from pipelines import isolation, staging
from pipelines.config import RETRYABLE, PrepareConfig, setting_changes
from pipelines.record import Clip, split_twins
from pipelines.stage_counts import stage_counts
from pipelines.stages import apply, caption_clips, cpu_stages, probe
from pipelines.stages.base import UNEXPECTED
from pipelines.stages.together import cut_together
from shards.format import Sample
from shards.index import INDEX, PREPARE_RUN_FILE, make_index
from shards.rawtar import read_samples
from shards.store import Store
from shards.writer import ShardSpec, write_shards

RUN_FILE = PREPARE_RUN_FILE
CONFIG_FILE = "config.json"
STATS_DIR = "stats"
STATS_FILE = "stats.json"
ERRORS_FILE = "errors.jsonl"
ATTEMPTS_DIR = "attempts"
RETRY_DIR = "retry"

log = logging.getLogger(__name__)


class RunMismatch(RuntimeError):
    """The output folder holds a run of another manifest or other settings."""


class EngineUnavailable(RuntimeError):
    """The engine cannot start here (no Ray cluster at the address, no Prism binary offline).

    Nothing was processed; the run's plan is on disk, so the same command resumes once it can.
    """


@dataclass(slots=True)
class Task:
    index: int
    clips: list[Clip]  # the rows this attempt runs the stages for
    timings: dict[str, float] = field(default_factory=dict)
    attempt: int = 1
    # (row, sample) an earlier attempt wrote, copied from its tars (``--retry-failed``)
    carried: list[tuple[int, Sample]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """For rows of bytes (Ray Data): a parcel's clip records (``pipelines.parcel``)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(data: Any) -> Task:
        """From bytes or any buffer (an Arrow buffer viewed in place)."""
        return pickle.loads(data)


@dataclass(slots=True)
class Plan:
    cfg: PrepareConfig
    total_rows: int
    tasks: list[int]  # indices of the tasks still to do; their rows are staged, not carried
    num_tasks: int
    done_tasks: int
    retried_tasks: int = 0  # finished tasks pending again for --retry-failed


def stats_rel(index: int) -> str:
    return f"{STATS_DIR}/{index:06d}.json"


def manifest_identity(manifest: str) -> dict[str, Any] | None:
    """Size and modification stamp of a manifest file (None for a folder or when unknown).

    A rerun whose manifest has the same identity and settings reuses the staged rows without
    reading 100M rows again; any change means a full check of the fingerprint.
    """
    try:
        fs, path = fsspec.core.url_to_fs(manifest)
        info = fs.info(path)
    except (OSError, ValueError):
        return None
    if info.get("type") != "file":
        return None
    stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag")
    return {"size": info.get("size"), "stamp": str(stamp)} if stamp is not None else None


def retry_rel(index: int) -> str:
    return f"{RETRY_DIR}/{index:06d}.json"


def reopen_failed(store: Store, stages: set[str]) -> list[int]:
    """Make pending again every finished task with a failure in ``stages``; return them.

    The stats file moves to ``retry/`` (written there first, then removed, so a kill in
    between leaves the task finished or pending, never lost), with the stages to redo; the new
    attempt reads it back to carry what the earlier one wrote (``carry_earlier``).
    """
    reopened = []
    for stats in read_task_stats(store):
        if not any(stage in stages for stage in stats["failed_by_stage"]):
            continue
        index = stats["task"]
        store.remove(kept_dir(index))  # copies of an older attempt's parts, left by a kill
        # the count of an interrupted run (finished runs remove them all): the retry is a
        # first attempt, not a rerun after a death (which would run it isolated and say so)
        store.remove(f"{ATTEMPTS_DIR}/{index:06d}")
        earlier = {**stats, "retry_stages": sorted(stages)}
        store.put_bytes(retry_rel(index), (json.dumps(earlier, ensure_ascii=False) + "\n").encode())
        store.remove(stats_rel(index))
        reopened.append(index)
    return reopened


def plan(
    manifest: str,
    cfg: PrepareConfig,
    progress: bool = False,
    retry_stages: set[str] | None = None,
) -> Plan:
    """Stage the manifest (first run) or check it is the one staged (rerun); list pending tasks
    (with ``retry_stages``, finished tasks that failed rows in those stages too).

    Raises ``RunMismatch`` when ``cfg.out`` already holds a run of a different manifest or of
    settings that change samples: mixing them would silently corrupt the dataset.
    """
    store = Store(cfg.out)
    store.remove("_tmp")  # scratch left by a killed run: never visible under a final name
    for rel in ("", STATS_DIR):
        store.remove_partial_writes(rel)
    identity = manifest_identity(manifest)
    settings = cfg.sample_settings()
    previous = read_run(store) if store.exists(RUN_FILE) else None
    if previous is None:  # run.json is written only once the rows are fully staged
        staged = staging.stage(manifest, cfg, progress)
        fingerprint, rows, num_tasks = staged.fingerprint, staged.rows, staged.tasks
        check_orphaned_tasks(store, fingerprint, num_tasks)
    else:
        rows, num_tasks, fingerprint = previous["rows"], previous["tasks"], previous["fingerprint"]
        same_file = identity is not None and previous.get("identity") == identity
        if not (same_file and previous.get("settings") == settings):
            recorded = previous.get("settings") or {}
            (fingerprint, as_recorded), rows = staging.fingerprint(
                manifest, cfg, progress, recorded
            )
            if as_recorded != previous["fingerprint"]:
                raise RunMismatch(
                    f"{cfg.out} already holds a run of another manifest "
                    f"({previous.get('manifest')}); use a new --out folder"
                )
            changes = setting_changes(recorded, settings)
            if changes:
                raise RunMismatch(
                    f"{cfg.out} already holds a run of this manifest made with other settings; "
                    f"to resume it pass {', '.join(changes)}; or use a new --out folder"
                )
            if recorded != settings:
                log.info(
                    "%s was made by an older clipvip; its settings match this one's, resuming",
                    cfg.out,
                )
    retried = reopen_failed(store, retry_stages) if retry_stages else []
    done = set(store.list(STATS_DIR))
    pending = [i for i in range(num_tasks) if f"{i:06d}.json" not in done]
    if pending:
        drop_summary(store)
    run = {
        "manifest": manifest,
        "fingerprint": fingerprint,
        "identity": identity,
        "settings": settings,
        "rows": rows,
        "tasks": num_tasks,
    }
    store.put_bytes(RUN_FILE, (json.dumps(run, indent=2) + "\n").encode())
    store.put_bytes(CONFIG_FILE, (cfg.to_json() + "\n").encode())
    return Plan(cfg, rows, pending, num_tasks, num_tasks - len(pending), len(retried))


def drop_summary(store: Store) -> None:
    """Remove the run-level ``stats.json`` and ``index.json`` while tasks are pending.

    Both describe the run as its last ``finalize`` left it. A task reopened by
    ``--retry-failed`` rewrites shard parts that ``index.json`` lists, so until the run ends
    again they would call a folder complete whose tars hold other samples than they say (a
    trainer reading it meanwhile would drop samples or meet a cut tar). ``finalize`` writes
    both anew; ``clipvip status`` reads the per-task files, not these.
    """
    store.remove(STATS_FILE)
    store.remove(INDEX)


def check_orphaned_tasks(store: Store, fingerprint: str, num_tasks: int) -> None:
    """Finished and reopened tasks in a folder without ``run.json`` (deleted as its damage
    message advises, or lost) are kept only if this manifest and these settings made them.

    Each stats file records the run's fingerprint (``write``): a rerun with another
    ``--shard-size`` would otherwise take task 1 of the old cut for task 1 of the new one,
    skip it, and lose rows with no line in errors.jsonl while calling the run complete. A task
    reopened by ``--retry-failed`` has its stats file under ``retry/`` instead; the rerun copies
    the samples it lists byte for byte (``carry_earlier``), so it is checked the same way: a
    rerun with another ``--crf`` would otherwise mix clips of both settings under one run.json.
    """
    finished = read_task_stats(store)
    reopened = read_retry_stats(store)
    foreign = [
        (t.get("task"), where)
        for where, tasks in ((STATS_DIR, finished), (RETRY_DIR, reopened))
        for t in tasks
        if t.get("run") != fingerprint or not _is(t.get("task"), int) or t["task"] >= num_tasks
    ]
    if foreign:
        task, where = foreign[0]
        raise RunMismatch(
            f"{store.root} holds {len(finished)} finished and {len(reopened)} reopened tasks "
            f"but no {RUN_FILE}, and {len(foreign)} of them (task {task} in {where}/ first) "
            f"were not made from this manifest with these settings (or by a clipvip that did "
            f"not record it): rerun with the options they were made with, use a new --out "
            f"folder, or remove {store.root}/{STATS_DIR}, {store.root}/{RETRY_DIR}, "
            f"{store.root}/{ATTEMPTS_DIR} and {store.root}/shards to start over"
        )


def read_retry_stats(store: Store) -> list[dict[str, Any]]:
    """The stats files of tasks reopened by ``--retry-failed`` (``retry/NNNNNN.json``); one
    that cannot be read counts as foreign (only its task number, from its name)."""
    found = []
    for rel, data in store.read_many(_json_files(store, RETRY_DIR)).items():
        try:
            stats = json.loads(data)
        except ValueError:
            stats = None
        name = rel.rsplit("/", 1)[-1].removesuffix(".json")
        found.append(stats if isinstance(stats, dict) else {"task": name})
    return found


def _json_files(store: Store, folder: str) -> list[str]:
    """The ``.json`` files directly under ``folder``, as paths relative to the store."""
    return [f"{folder}/{n}" for n in store.list(folder) if n.endswith(".json")]


def load_task(index: int, cfg: PrepareConfig) -> Task:
    """Task ``index`` with its clips, read from the staged rows (on whichever worker runs it);
    for a task reopened by ``--retry-failed``, only the rows to redo (``carry_earlier``)."""
    task = Task(index, staging.load_clips(cfg, index))
    store = Store(cfg.out)
    if store.exists(retry_rel(index)):
        carry_earlier(task, store)
    return task


def kept_dir(index: int) -> str:
    """Where a retry of task ``index`` keeps its earlier attempt's parts until it is done."""
    return f"{RETRY_DIR}/{index:06d}"


def kept_rel(index: int, url: str) -> str:
    return f"{kept_dir(index)}/{url.rsplit('/', 1)[-1]}"


def keep_earlier_parts(store: Store, index: int) -> None:
    """Before a retry overwrites its task's parts: a copy of each earlier part (a hard link
    locally), made once. A retry killed after overwriting part 1 (a recovered row pushes later
    samples up) and before writing part 2 would otherwise have destroyed the only copy of the
    samples it was carrying; the rerun reads these instead."""
    earlier = json.loads(store.read_text(retry_rel(index)))
    for url in (s["url"] for s in earlier["shards"]):
        if store.exists(url) and not store.exists(kept_rel(index, url)):
            store.copy(url, kept_rel(index, url))


def parts_from(store: Store, spec: ShardSpec, first: int) -> list[str]:
    """The task's shard parts numbered ``first`` on that exist. Parts are written in order, so
    these are what an attempt that wrote more parts left (one killed before its stats file, or
    one whose rows worked where the latest attempt's failed)."""
    found: list[str] = []
    while store.exists(rel := spec.rel_path(first + len(found))):
        found.append(rel)
    return found


def carry_earlier(task: Task, store: Store) -> None:
    """Keep what the earlier attempt of a reopened task got right; leave the rest to redo.

    Rows that failed in a retried stage run again. Rows that failed in another stage keep their
    failure. Rows the earlier attempt wrote are read back from its tars, bytes as they are; a
    row whose sample cannot be read back (a part lost or damaged since) runs again too. The tars
    are the earlier attempt's parts, from the copies ``keep_earlier_parts`` made where a retry
    was killed after writing over them.
    """
    earlier = json.loads(store.read_text(retry_rel(task.index)))
    stages = set(earlier.get("retry_stages", RETRYABLE))
    failed = {f["row"]: f for f in earlier["failures"]}
    written = {c.key for c in task.clips if c.row not in failed}
    found: dict[str, Sample] = {}
    for url in (s["url"] for s in earlier["shards"]):
        kept = kept_rel(task.index, url)
        if written - found.keys():
            try:
                with store.open(kept if store.exists(kept) else url) as fh:
                    found.update((s.key, s) for s in read_samples(fh, written))
            except FileNotFoundError:
                continue
    redo = []
    for clip in task.clips:
        failure = failed.get(clip.row)
        if failure is None and clip.key in found:
            task.carried.append((clip.row, found[clip.key]))
            continue
        if failure is not None and failure["stage"] not in stages and clip.ok:
            clip.fail(failure["stage"], failure["reason"])
        redo.append(clip)
    if len(written) > len(task.carried):
        log.warning(
            "task %d: %d sample(s) of its earlier attempt could not be read back; making them again",
            task.index,
            len(written) - len(task.carried),
        )
    task.clips = redo


def begin_attempt(store: Store, index: int) -> int:
    """Count a start of task ``index``; return which attempt this is (1 for the first)."""
    rel = f"{ATTEMPTS_DIR}/{index:06d}"
    try:
        before = int(store.read_text(rel))
    except (FileNotFoundError, ValueError):
        before = 0
    store.put_bytes(rel, f"{before + 1}\n".encode())
    return before + 1


def run_stages(clips: list[Clip], cfg: PrepareConfig) -> None:
    """The CPU stages over ``clips`` in this process. Every row is probed first, so the spans
    of one video can be cut in one ffmpeg run (the same bytes as one by one, see
    ``pipelines.stages.together``); the rest goes row by row. A row whose clip another row of
    the task already cuts (the same ``source_span``) shares that row's outputs instead of
    making the same bytes again."""
    counts = stage_counts(cfg.out, cfg.live_progress)
    for clip in clips:
        apply("probe", probe, clip, cfg)
    leads, twins = split_twins(clips)
    unprobed = [clip for clip in clips if not clip.ok]  # they skip the later stages
    counts.note("probe", clips)
    cut_together(leads, cfg)
    for clip in leads:
        for name, stage in cpu_stages(cfg)[1:]:
            if name != "clip" or clip.mp4 is None:  # not cut together above
                apply(name, stage, clip, cfg)
            counts.note(name, [clip])
    for twin, lead in twins:
        twin.share(lead)
    # a twin shares its lead's clip: it went through each stage with it
    for name, _ in cpu_stages(cfg)[1:]:
        counts.note(name, [*(twin for twin, _ in twins), *unprobed])
    counts.flush()  # a phase's last counts, before this process turns to another task or idles


def process(task: Task | int, cfg: PrepareConfig) -> Task:
    """The CPU stages (probe, clip, middle frame, the captioner's input) for every clip of the
    task (or task index).

    In process on a task's first attempt (unless ``cfg.isolate == "always"``); isolated in a
    child process on any later one, so a row that crashes the worker fails alone.
    """
    if isinstance(task, int):
        task = load_task(task, cfg)
    task.attempt = begin_attempt(Store(cfg.out), task.index)
    stages = cpu_stages(cfg)
    if task.attempt == 1 and cfg.isolate != "always":
        run_stages(task.clips, cfg)
        return task
    if task.attempt > 1:
        log.warning(
            "task %d, attempt %d: an earlier attempt started and never finished (a worker died "
            "or the run was killed); running its rows isolated in a child process",
            task.index,
            task.attempt,
        )
    child = isolation.shared()
    counts = stage_counts(cfg.out, cfg.live_progress)
    for i, clip in enumerate(task.clips):
        for name, _ in stages:
            task.clips[i] = clip = child.apply(name, clip, cfg)
            counts.note(name, [clip])
    counts.flush()
    return task


def caption(task: Task, captioner: Captioner | None, cfg: PrepareConfig) -> Task:
    """Caption the task's middle frames in batches (images batched across its clips)."""
    caption_clips(task.clips, captioner, cfg.caption_batch_size)
    if captioner is not None:
        counts = stage_counts(cfg.out, cfg.live_progress)
        counts.note("caption", task.clips)
        counts.flush()
    return task


def to_sample(clip: Clip) -> Sample:
    fields = {
        "mp4": clip.mp4 or b"",
        "jpg": clip.jpg or b"",
        "txt": (clip.text or "").encode("utf-8"),
        "json": json.dumps(clip.metadata(), sort_keys=True, ensure_ascii=False).encode("utf-8"),
    }
    if clip.caption is not None:
        fields["caption.txt"] = clip.caption.encode("utf-8")
    return Sample(clip.key, fields)


def write(task: Task, cfg: PrepareConfig) -> dict[str, Any]:
    """Write the task's good clips as shards, then its stats file (the completion marker)."""
    store = Store(cfg.out)
    t0 = time.perf_counter()
    good = [c for c in task.clips if c.ok]
    in_order = sorted([(c.row, c) for c in good] + task.carried, key=lambda pair: pair[0])
    samples = (x if isinstance(x, Sample) else to_sample(x) for _, x in in_order)
    spec = ShardSpec(cfg.name, task.index, cfg.shard_bytes)
    retry = retry_rel(task.index)
    retrying = store.exists(retry)
    if retrying:
        keep_earlier_parts(store, task.index)
    shards = write_shards(samples, store, spec)
    for stale in parts_from(store, spec, len(shards)):  # so a glob sees just the index's samples
        store.remove(stale)
    seconds: Counter[str] = Counter()
    for clip in task.clips:
        seconds.update(clip.timings)
    seconds["write"] += time.perf_counter() - t0
    failures = [c.failure_row() for c in task.clips if not c.ok]
    stats = {
        "task": task.index,
        "rows": len(task.clips) + len(task.carried),
        "written": len(good) + len(task.carried),
        "carried": len(task.carried),
        "failed": len(failures),
        "failed_by_stage": dict(Counter(f["stage"] for f in failures)),
        "failures": failures,
        "shards": [asdict(s) for s in shards],
        "seconds": {k: round(v, 4) for k, v in sorted(seconds.items())},
        "attempt": task.attempt,
        "finished_at": round(time.time(), 3),  # for `clipvip status`: rate and time left
        "run": _run_fingerprint(store),  # whose task this is, should run.json be lost
    }
    store.put_bytes(stats_rel(task.index), (json.dumps(stats, ensure_ascii=False) + "\n").encode())
    counts = stage_counts(cfg.out, cfg.live_progress)
    counts.note("write", task.clips)
    counts.carried(len(task.carried))  # done by an earlier attempt: through every stage
    counts.flush()
    if retrying:
        store.remove(kept_dir(task.index))
        store.remove(retry)
    return stats


def _run_fingerprint(store: Store) -> str | None:
    try:
        run = json.loads(store.read_bytes(RUN_FILE))
    except (OSError, ValueError):  # the task itself does not need it; finalize names the damage
        return None
    return run.get("fingerprint") if isinstance(run, dict) else None


def run_task(task: Task | int, cfg: PrepareConfig, captioner: Captioner | None) -> dict[str, Any]:
    """All phases of one task in this process (the local runner and the tests use it)."""
    return write(caption(process(task, cfg), captioner, cfg), cfg)


class DamagedRun(RuntimeError):
    """A file of the run (``run.json``, a task's stats) is not what ``prepare`` writes: cut short
    by a full disk, edited, or put there by something else. The message names the file and how to
    recover, instead of a traceback from deep inside a merge after a run of days."""


REDO_TASK = "delete it and rerun the same `clipvip prepare` command to redo that task"
REDO_RUN = (
    "delete it and rerun the same `clipvip prepare` command (finished tasks are kept when that "
    "manifest and those settings made them)"
)
# A task's stats file: the fields read back and their types. The optional ones are read with a
# default (``t.get("carried", 0)``): older clipvip versions did not write them.
STATS_FIELDS: dict[str, Any] = {"task": int, "rows": int, "written": int, "failed_by_stage": dict}
OPTIONAL_FIELDS: dict[str, Any] = {
    "carried": int,
    "attempt": int,
    "finished_at": (int, float),
    "run": (str, type(None)),
}


def damaged(out: str, rel: str, why: str, remedy: str) -> DamagedRun:
    return DamagedRun(f"{out.rstrip('/')}/{rel} is damaged ({why}): {remedy}")


def read_run(store: Store) -> dict[str, Any]:
    """``run.json``, checked for the counts everything else reads from it."""
    try:
        run = json.loads(store.read_bytes(RUN_FILE))
    except ValueError as err:  # UnicodeDecodeError too
        raise damaged(store.root, RUN_FILE, f"not JSON: {err}", REDO_RUN) from err
    if not isinstance(run, dict) or not all(_is(run.get(k), int) for k in ("rows", "tasks")):
        raise damaged(store.root, RUN_FILE, "no row and task counts", REDO_RUN)
    return run


def read_task_stats(store: Store, merge: bool = False) -> list[dict[str, Any]]:
    """Every finished task's stats file, in task order (fetched concurrently on object storage),
    each checked (with ``merge``, for the shard list and timings ``finalize`` adds up too)."""
    if store.exists(STATS_DIR) and not store.fs.isdir(store.path(STATS_DIR)):
        raise damaged(store.root, STATS_DIR, "a file, not the folder of task stats", "remove it")
    per_task = []
    for rel, data in store.read_many(_json_files(store, STATS_DIR)).items():
        try:
            stats = json.loads(data)
        except ValueError as err:
            raise damaged(store.root, rel, f"not JSON: {err}", REDO_TASK) from err
        problem = stats_problem(stats, merge)
        if problem:
            raise damaged(store.root, rel, problem, REDO_TASK)
        per_task.append(stats)
    return sorted(per_task, key=lambda s: s["task"])


def stats_problem(stats: object, merge: bool = False) -> str | None:
    """What is wrong with a parsed stats file, or None."""
    if not isinstance(stats, dict):
        return "not a JSON object"
    wrong = [k for k, t in STATS_FIELDS.items() if not _is(stats.get(k), t)]
    wrong += [k for k, t in OPTIONAL_FIELDS.items() if k in stats and not _is(stats[k], t)]
    if "failed_by_stage" not in wrong and not all(
        _is(n, int) for n in stats["failed_by_stage"].values()
    ):
        wrong.append("failed_by_stage")
    failures = stats.get("failures")
    if not isinstance(failures, list) or not all(
        isinstance(f, dict) and all(isinstance(f.get(k), str) for k in ("stage", "key", "reason"))
        for f in failures
    ):
        wrong.append("failures")
    if merge:
        shards = stats.get("shards")
        if not isinstance(shards, list) or not all(
            isinstance(sh, dict)
            and isinstance(sh.get("url"), str)
            and all(_is(sh.get(k), int) for k in ("nsamples", "nbytes"))
            for sh in shards
        ):
            wrong.append("shards")
        seconds = stats.get("seconds")
        if not isinstance(seconds, dict) or not all(_is(v, (int, float)) for v in seconds.values()):
            wrong.append("seconds")
    return f"bad or missing {', '.join(wrong)}" if wrong else None


def _is(value: object, types: Any) -> bool:
    """``isinstance`` where a bool is no number (JSON ``true`` is not a count)."""
    return isinstance(value, types) and not isinstance(value, bool)


def tally(run: dict[str, Any], per_task: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a run stands, from ``run.json`` and the finished tasks' stats (for ``stats.json``
    at the end of a run and for ``clipvip status`` during one)."""
    by_stage: Counter[str] = Counter()
    for t in per_task:
        by_stage.update(t["failed_by_stage"])
    return {
        "rows": run["rows"],
        "rows_done": sum(t["rows"] for t in per_task),
        "samples": sum(t["written"] for t in per_task),
        "failed": sum(by_stage.values()),
        "failed_by_stage": dict(sorted(by_stage.items())),
        # failures no stage foresaw (``stages.base.apply``): a bug or an unforeseen input, not
        # necessarily the row's fault; once fixed, --retry-failed runs them again
        "failed_unexpected": sum(
            f["reason"].startswith(UNEXPECTED) for t in per_task for f in t["failures"]
        ),
        "tasks": run["tasks"],
        "tasks_done": len(per_task),
        "tasks_retried": sum(1 for t in per_task if t.get("attempt", 1) > 1),
        "complete": len(per_task) == run["tasks"],
    }


def _this_invocation(now: list[dict[str, Any]], rows_skipped: int) -> dict[str, Any]:
    """What the tasks run by this invocation (``now``) made, for a resumed run's summary: the
    run's totals include the earlier invocations' work."""
    seconds: Counter[str] = Counter()
    for t in now:
        seconds.update(t["seconds"])
    return {
        "samples_run": sum(t["written"] - t.get("carried", 0) for t in now),
        "rows_skipped": rows_skipped,  # rows of the tasks done before this invocation
        "seconds_run_by_stage": {k: round(v, 3) for k, v in sorted(seconds.items())},
    }


def finalize(cfg: PrepareConfig, ran: Sequence[int] = ()) -> dict[str, Any]:
    """Merge every task's stats into ``index.json``, ``stats.json`` and ``errors.jsonl``;
    ``rows_run`` counts the rows that the tasks ``ran`` (this invocation's) processed, and
    ``this_invocation`` what they made (``_this_invocation``).

    Built from the per-task files each time, so a resumed run reports each row exactly once.
    """
    store = Store(cfg.out)
    run = read_run(store)
    per_task = read_task_stats(store, merge=True)
    shards = [s for t in per_task for s in t["shards"]]
    failures = [f for t in per_task for f in t["failures"]]
    seconds: Counter[str] = Counter()
    for t in per_task:
        seconds.update(t["seconds"])
    summary = {
        **tally(run, per_task),
        "shards": len([s for s in shards if s["nsamples"]]),
        "bytes": sum(s["nbytes"] for s in shards),
        "seconds_by_stage": {k: round(v, 3) for k, v in sorted(seconds.items())},
    }
    now = [t for t in per_task if t["task"] in set(ran)]
    carried = sum(t.get("carried", 0) for t in now)  # copied by --retry-failed, not redone
    rows_run = sum(t["rows"] for t in now) - carried
    store.put_bytes(INDEX, (json.dumps(make_index(shards, cfg.name), indent=2) + "\n").encode())
    store.put_bytes(STATS_FILE, (json.dumps(summary, indent=2) + "\n").encode())
    lines = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures)
    store.put_bytes(ERRORS_FILE, lines.encode("utf-8"))
    # this invocation's figures, not the run's: kept out of stats.json
    summary["rows_run"] = rows_run
    summary["this_invocation"] = _this_invocation(now, summary["rows_done"] - rows_run - carried)
    if summary["complete"]:
        store.remove("_tmp")
        store.remove(ATTEMPTS_DIR)  # each task's count stays in its stats file
        store.remove(RETRY_DIR)
    return summary
