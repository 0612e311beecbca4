"""Apache Beam engine: schedules the shared task phases; holds no stage logic.

Tasks -> Reshuffle (spread over workers) -> CPU stages -> RunInference with our captioner model
handler (``pipelines.beam_caption``; left out under ``--captioner none``) -> write. Any
standard Beam option passes through, so the same command targets Flink, Spark or Dataflow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from collections.abc import Iterator, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipelines import tasks as T
from pipelines.tasks import EngineUnavailable


def default_options(beam_args: Sequence[str]) -> PipelineOptions:
    """DirectRunner unless the user says otherwise; everything else as Beam parses it."""
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        # Worker processes otherwise print dozens of INFO lines about gRPC channels per run.
        args.append("--default_sdk_harness_log_level=WARNING")
    return PipelineOptions(args)


def unknown_options(beam_args: Sequence[str]) -> tuple[list[str], bool]:
    """Options in ``beam_args`` that no Beam options class defines, and whether the runner is direct.

    Beam only logs such options and carries on, so a misspelled clipvip flag (``--shard-sise``)
    would be dropped without a word; a portable runner (Flink, Spark) may still want options
    only its job server knows, so the caller decides by runner.
    """
    options = default_options(beam_args)
    known = options.get_all_options()
    every = options.get_all_options(retain_unknown_options=True)
    names = set(every) - set(known)  # Beam's spelling: dashes read as underscores
    given = [a.split("=", 1)[0] for a in beam_args if a.startswith("--")]
    return [a for a in given if a[2:].replace("-", "_") in names], _is_direct(options)


def _runner_name(options: PipelineOptions) -> str:
    """The runner as Beam resolves its name: case aside, ``Runner`` optional (``direct``)."""
    name = (options.view_as(StandardOptions).runner or "DirectRunner").lower()
    return name.removesuffix("runner")


def _is_direct(options: PipelineOptions) -> bool:
    return _runner_name(options) in ("direct", "bundlebaseddirect", "switchingdirect")


def direct_runner(options: PipelineOptions):
    """For ``--runner DirectRunner`` (the default): the FnApiRunner, as Beam's DirectRunner
    builds it; None for any other runner (Beam makes that one from the options).

    Why not Beam's own: since 2.6x its DirectRunner first tries the PrismRunner, which downloads
    a Go binary from GitHub at every run (no downloads at run time here; offline it fails,
    leaves a ``beam-temp*`` folder in /tmp and falls back to this very runner). On a machine
    with a network the run would instead move to Prism, which ignores ``--direct_num_workers``
    and the worker-process isolation ``run`` sets up for it. Asking for ``PrismRunner`` by
    name still gets Prism; ``--streaming`` is left to Beam (the FnApiRunner is batch only).
    """
    if _runner_name(options) not in ("direct", "switchingdirect"):
        return None
    if options.view_as(StandardOptions).streaming:  # Beam's own picks its bundle-based runner
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(info))


@contextlib.contextmanager
def _ctrl_c_is_an_interrupt() -> Iterator[None]:
    """Ctrl-C during a Beam run ends as a ``KeyboardInterrupt`` (clipvip's "interrupted; rerun
    to resume", exit 130), as on the other engines.

    Beam reports an interrupt inside a step as ``RuntimeError: KeyboardInterrupt [while running
    'ProbeClipFrame']`` (a traceback and exit 1), and each worker process the same Ctrl-C ended
    prints a thread's traceback, ``Worker subprocess exited with return code -2``. Other worker
    deaths (a decoder's SIGSEGV: -11) are still printed.
    """
    interrupted = f"return code {-signal.SIGINT}"
    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (isinstance(args.exc_value, RuntimeError) and interrupted in str(args.exc_value)):
            default(args)

    threading.excepthook = hook
    stopped = False  # by Ctrl-C: the hook stays, the workers' threads report their ends later
    try:
        yield
    except KeyboardInterrupt:
        stopped = True
        raise
    except RuntimeError as exc:
        if not str(exc).startswith("KeyboardInterrupt"):
            raise
        stopped = True
        raise KeyboardInterrupt from exc
    finally:
        if not stopped:
            threading.excepthook = default


def run(plan: T.Plan, beam_args: Sequence[str] = (), accelerator: str | None = None) -> None:
    if not plan.tasks:
        return
    cfg = plan.cfg
    options = default_options(beam_args)
    direct = options.view_as(DirectOptions)
    local_workers = 1
    if direct.direct_running_mode == "multi_processing":
        local_workers = direct.direct_num_workers or os.cpu_count() or 1  # 0 means one per core
        if _is_direct(options):
            # The DirectRunner waits forever for a worker process that died (a video that
            # crashes the decoder): keep the decoders out of its workers.
            cfg = dataclasses.replace(cfg, isolate="always")
    try:
        with (
            _ctrl_c_is_an_interrupt(),
            beam.Pipeline(runner=direct_runner(options), options=options) as p,
        ):
            tasks = (
                p
                | "Tasks" >> beam.Create(plan.tasks)
                | "Spread" >> beam.Reshuffle()
                | "ProbeClipFrame" >> beam.Map(T.process, cfg)
            )
            if cfg.captioner != "none":  # as on Ray: no caption step without a captioner
                from pipelines.beam_caption import caption_step

                tasks = tasks | "Caption" >> caption_step(cfg, local_workers, accelerator)
            _ = tasks | "Write" >> beam.Map(T.write, cfg)
    except (RuntimeError, ValueError) as exc:
        runner = options.view_as(StandardOptions).runner or ""
        if "prism" in runner.lower() and "prism" in str(exc).lower():
            raise EngineUnavailable(
                "Beam's PrismRunner runs a Go binary that Beam downloads from GitHub at start-up, "
                f"and that failed ({str(exc).splitlines()[0][:200]}). Offline, pass "
                "--prism_location=PATH (a prism binary or its release zip), or use --runner beam "
                "(the DirectRunner; --workers N for N processes)"
            ) from exc
        raise
