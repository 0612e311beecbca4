"""The caption actor pool never starves the CPU stages, and bad Ray settings fail in one line."""

from __future__ import annotations

import pytest

from pipelines.ray import RayOptions, caption_placement, parse_address
from pipelines.tasks import EngineUnavailable


def test_a_cpu_pool_larger_than_the_cluster_is_capped_so_a_task_and_a_write_fit():
    # 2 CPUs: 1 for a task, 0.25 for a write, so one 0.5-CPU actor (4 took every CPU: a hang)
    args, actors = caption_placement(RayOptions(caption_pool=4), 0, cluster_cpus=2.0)
    assert args == {"num_cpus": 0.5} and actors == 1
    assert caption_placement(RayOptions(caption_pool=4), 0, cluster_cpus=16.0)[1] == 4
    assert caption_placement(RayOptions(caption_pool=40), 0, cluster_cpus=16.0)[1] == 29
    # a 1-CPU machine still gets its one actor (the task asks for less there)
    assert caption_placement(RayOptions(caption_pool=3), 0, 1.0, task_cpus=0.5)[1] == 1


def test_the_cap_is_logged(caplog):
    caplog.set_level("WARNING", logger="pipelines.ray")
    caption_placement(RayOptions(caption_pool=4), 0, cluster_cpus=2.0)
    assert "--caption-pool 4 capped to 1" in caplog.text


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
