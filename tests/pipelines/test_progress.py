"""Progress bars: one of finished rows, and one per stage fed by the workers' live counts."""

from __future__ import annotations

import json

from pipelines import local
from pipelines import tasks as T
from pipelines.config import PrepareConfig
from pipelines.prepare import stage_names
from pipelines.progress import RunProgress
from pipelines.stage_counts import PROGRESS_DIR, read_counts
from shards.store import Store


def _manifest(videos, tmp_path):
    rows = [{"key": f"k{i}", "video": str(videos["h264"]), "text": f"row {i}"} for i in range(3)]
    rows.append({"key": "twin", "video": str(videos["h264"]), "text": "the same clip again"})
    rows.append({"key": "bad", "video": str(videos["corrupt"]), "text": "broken"})
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def test_every_stage_bar_ends_at_the_row_count_with_its_own_failures(videos, tmp_path):
    out = tmp_path / "out"
    cfg = PrepareConfig(out=str(out), shard_size=2, frame_short_side=64, live_progress=True)
    plan = T.plan(str(_manifest(videos, tmp_path)), cfg, False, set())
    stages = stage_names(cfg)
    assert stages == ["probe", "clip", "middle_frame", "caption", "write"]  # random-tiny: no prep
    with RunProgress(str(out), plan.total_rows, stages=stages, terminal=True) as bars:
        local.run(plan)
        counts = read_counts(Store(str(out)))
        bars.poll()
        shown = bars.stage_totals()
    # the corrupt video fails at probe; it is through every later stage too (it skips them)
    assert counts["probe"] == [5, 1] and counts["write"] == [5, 0]
    assert all(counts[s] == [5, 0] for s in stages[1:])
    assert shown == dict.fromkeys(stages, 5)
    assert not (out / PROGRESS_DIR).exists(), "the live counts are display only, removed at the end"


def test_without_bars_workers_write_no_counts(videos, tmp_path):
    out = tmp_path / "out"
    cfg = PrepareConfig(out=str(out), shard_size=5, frame_short_side=64, captioner="none")
    local.run(T.plan(str(_manifest(videos, tmp_path)), cfg, False, set()))
    assert not (out / PROGRESS_DIR).exists()
