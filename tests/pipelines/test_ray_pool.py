"""The caption actor pool never starves the CPU stages, and bad Ray settings fail in one line."""

from __future__ import annotations

import pytest

from pipelines.ray import CPU_PER_WRITE, RayOptions, caption_placement, cpu_per_task, parse_address
from pipelines.tasks import EngineUnavailable


def test_a_cpu_pool_larger_than_the_cluster_is_capped_so_a_task_fits():
    # 2 CPUs: 1 for a task, so two 0.5-CPU actors (4 took every CPU: a hang)
    args, actors = caption_placement(RayOptions(caption_pool=4), 0, cluster_cpus=2.0)
    assert args == {"num_cpus": 0.5} and actors == 2
    assert caption_placement(RayOptions(caption_pool=4), 0, cluster_cpus=16.0)[1] == 4
    assert caption_placement(RayOptions(caption_pool=40), 0, cluster_cpus=16.0)[1] == 30
    # a 1-CPU machine still gets its one actor (the task asks for less there)
    assert caption_placement(RayOptions(caption_pool=3), 0, 1.0, task_cpus=0.5)[1] == 1


def test_the_cap_is_logged(caplog):
    caplog.set_level("WARNING", logger="pipelines.ray")
    caption_placement(RayOptions(caption_pool=4), 0, cluster_cpus=2.0)
    assert "--caption-pool 4 capped to 2" in caplog.text


def test_a_task_asks_for_a_whole_cpu_unless_a_cpu_caption_actor_must_fit_beside_it():
    one_cpu, two_cpus = [{"Resources": {"CPU": 1.0}}], [{"Resources": {"CPU": 2.0}}]
    assert cpu_per_task(two_cpus, cpu_actor=True) == 1.0
    assert cpu_per_task(one_cpu, cpu_actor=True) == 0.5  # a whole CPU would wait forever
    assert cpu_per_task(one_cpu, cpu_actor=False) == 1.0  # not two tasks on one core


def test_ray_data_runs_a_cpu_stage_task_on_every_cpu_at_once(tmp_path):
    """The resources the engine asks for, under Ray Data's allocator: a write that asked for a
    quarter CPU had a share of the CPUs reserved for it, and 1 of 2 (5 of 8) CPUs ran tasks."""
    import ray

    from pipelines.ray import init

    init()
    cpus = int(ray.cluster_resources()["CPU"])
    ray.data.DataContext.get_current().enable_progress_bars = False

    def stage(row: dict) -> dict:  # a barrier: every task waits until all have started
        import time

        (tmp_path / f"started-{row['i']}").touch()
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("started-*"))) < cpus and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"i": row["i"], "saw": len(list(tmp_path.glob("started-*")))}

    ds = ray.data.from_items([{"i": i} for i in range(cpus)], override_num_blocks=cpus)
    ds = ds.map(stage, num_cpus=cpu_per_task(ray.nodes(), cpu_actor=False))
    ds = ds.map(lambda row: row, num_cpus=CPU_PER_WRITE)
    assert sorted(row["saw"] for row in ds.iter_rows()) == [cpus] * cpus


def test_gpu_actors_are_capped_by_gpus_not_cpus():
    args, actors = caption_placement(RayOptions(caption_pool=8), 2.0, cluster_cpus=2.0)
    assert args == {"num_gpus": 1.0} and actors == 2


def test_asking_for_gpus_a_cluster_does_not_have_fails_at_once():
    with pytest.raises(EngineUnavailable, match="ask for 1 GPU.*cluster has 0"):
        caption_placement(RayOptions(caption_gpus=1), 0, cluster_cpus=2.0)
    with pytest.raises(EngineUnavailable):
        caption_placement(RayOptions(caption_gpus=2), 1.0)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379)),
        ("ray://head:10001", ("head", 10001)),
        ("[::1]:6379", ("::1", 6379)),
        ("auto", (None, None)),
    ],
)
def test_ray_addresses_parse(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["garbage", "host:", ":6379", "host:99999", "[::1:6379"])
def test_a_malformed_ray_address_is_a_one_line_error(address):
    with pytest.raises(EngineUnavailable, match="expected HOST:PORT"):
        parse_address(address)


def test_cli_prints_one_line_for_a_garbage_address(tmp_path, capsys):
    from clipvip.cli import main

    m = tmp_path / "m.csv"
    m.write_text("video,text\n/v/a.mp4,x\n")
    argv = ["prepare", str(m), "--out", str(tmp_path / "o"), "--captioner", "none"]
    code = main([*argv, "--runner", "ray", "--ray-address", "garbage"])
    err = capsys.readouterr().err
    assert code != 0 and "expected HOST:PORT" in err and "Traceback" not in err
