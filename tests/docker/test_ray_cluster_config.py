"""docker/ray-cluster.yaml, checked with the installed Ray's own cluster-launcher code (offline).

No cloud and no Docker engine here: the config goes through the steps `ray up` takes before it
talks to AWS (defaults filled in, then Ray's schema and checks), and each node's `docker run` line
is built by Ray's own `docker_start_cmds`, then resolved against our Dockerfiles' ENTRYPOINT the
way Docker does, to see which process the container would start.
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.docker import docker_start_cmds
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "docker" / "ray-cluster.yaml").read_text())
DOCKERFILE_OF_TAG = {"cpu": "Dockerfile.cpu", "gpu": "Dockerfile.gpu"}


def node_docker_runs(config: dict) -> dict[str, tuple[str, list[str]]]:
    """Per node type: (image, argv of the `docker run` the launcher would issue there).

    The head takes the top-level docker section (commands.py); a worker takes it updated by its
    node type's own docker section (StandardAutoscaler._get_node_specific_docker_config), a shallow
    update; the options are run_options + head_/worker_run_options (DockerCommandRunner.run_init).
    """
    runs = {}
    for name, node_type in config["available_node_types"].items():
        role = "head" if name == config["head_node_type"] else "worker"
        docker = copy.deepcopy(config["docker"])
        if role == "worker":
            docker.update(node_type.get("docker", {}))
        image = docker.get(f"{role}_image", docker.get("image"))
        options = docker.get("run_options", []) + docker.get(f"{role}_run_options", [])
        command = docker_start_cmds(
            "ubuntu", image, {}, docker["container_name"], options, "clipvip", "/root", "docker"
        )
        runs[name] = (image, shlex.split(command))
    return runs


def started_process(argv: list[str], image: str, image_entrypoint: list[str]) -> list[str]:
    """What Docker runs for `docker run [OPTIONS] IMAGE ARGS...`: ENTRYPOINT + ARGS, where
    `--entrypoint=` (empty) clears the image's ENTRYPOINT and `--entrypoint=X` replaces it."""
    at = argv.index(image)
    options, args = argv[:at], argv[at + 1 :]
    entrypoint = image_entrypoint
    for option in options:
        if option.startswith("--entrypoint="):
            value = option.removeprefix("--entrypoint=")
            entrypoint = [value] if value else []
    return entrypoint + args


def image_entrypoint(dockerfile: str) -> list[str]:
    lines = (ROOT / "docker" / dockerfile).read_text().splitlines()
    entrypoints = [line.split(None, 1)[1] for line in lines if line.startswith("ENTRYPOINT ")]
    return json.loads(entrypoints[-1]) if entrypoints else []


def dockerfile_for(image: str) -> str:
    return DOCKERFILE_OF_TAG[image.rsplit("-", 1)[-1]]


def test_ray_validates_the_cluster_config_as_ray_up_would():
    config = prepare_config(copy.deepcopy(CONFIG))
    validate_config(config)  # raises on a schema error or an inconsistent node-type setup
    assert config["docker"]["container_name"], "an empty container_name turns Docker off"
    assert set(config["available_node_types"]) == {"head", "cpu_worker", "gpu_worker"}


def test_every_node_pulls_a_registry_image_not_a_local_tag():
    images = {image for image, _ in node_docker_runs(CONFIG).values()}
    assert images == {"REGISTRY/clipvip:0.1.0-cpu", "REGISTRY/clipvip:0.1.0-gpu"}
    assert all("/" in image for image in images)


@pytest.mark.parametrize("node_type", sorted(CONFIG["available_node_types"]))
def test_each_node_container_starts_bash_so_ray_can_exec_into_it(node_type):
    image, argv = node_docker_runs(CONFIG)[node_type]
    assert argv[-2:] == [image, "bash"], "the launcher's own command line changed shape"
    entrypoint = image_entrypoint(dockerfile_for(image))
    assert entrypoint == ["clipvip"], "docs: `docker run IMAGE prepare ...`"
    assert started_process(argv, image, entrypoint) == ["bash"]


def test_without_clearing_the_entrypoint_the_container_would_run_clipvip_bash():
    config = copy.deepcopy(CONFIG)
    config["docker"]["run_options"].remove("--entrypoint=")
    image, argv = node_docker_runs(config)["cpu_worker"]
    entrypoint = image_entrypoint(dockerfile_for(image))
    assert started_process(argv, image, entrypoint) == ["clipvip", "bash"]


def test_gpu_nodes_get_the_gpus_and_keep_the_shared_options():
    image, argv = node_docker_runs(CONFIG)["gpu_worker"]
    assert dockerfile_for(image) == "Dockerfile.gpu"
    assert "--gpus" in argv and argv[argv.index("--gpus") + 1] == "all"
    assert "--entrypoint=" in argv and "--ulimit" in argv
    for name in ("head", "cpu_worker"):
        assert "--gpus" not in node_docker_runs(CONFIG)[name][1]


def test_the_cluster_images_carry_what_the_launcher_runs_inside_them():
    """rsync copies files into the containers, the head's autoscaler reaches workers over ssh and
    starts AWS nodes with boto3: all run inside the containers, none comes with python:slim."""
    runs = node_docker_runs(CONFIG)
    for name, (image, _) in runs.items():
        text = (ROOT / "docker" / dockerfile_for(image)).read_text()
        assert "rsync" in text and "openssh-client" in text, name
    head_image = runs[CONFIG["head_node_type"]][0]
    assert CONFIG["provider"]["type"] == "aws"
    assert "boto3" in (ROOT / "docker" / dockerfile_for(head_image)).read_text()
