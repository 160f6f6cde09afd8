"""docker-compose.yml without a Docker daemon: valid against the Compose Specification's schema, and in
agreement with the code it starts (ports, paths, image name, environment variables, networks)."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from cloud.defaults import DEFAULT_WORKDIR
from cloud.deploy import DeployConfig
from local_model import settings
from scones.local import emulator
from scones.pipeline import sagemaker_local, steps

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).parent / "vendor" / "compose-spec.json"
SCHEMA_SHA256 = "bc50c2d79102aed8df21b3a13e56c9396c7a06da6cff5ce37629f2ee7eb41735"  # vendor/README.md
# Every variable the file reads from the user's environment (the README's configuration reference lists them).
VARIABLES = {
    "LOCALSTACK_IMAGE",
    "LOCALSTACK_AUTH_TOKEN",
    "SCONES_MODEL_HOST_DIR",
    "SCONES_CAPTURE_DESTINATION",
    "SCONES_ENDPOINT_NAME",
    "AWS_DEFAULT_REGION",
    "DOCKER_SOCKET",
    "SCONES_MODEL_BASE_IMAGE",
    "SCONES_MODEL_PIP_SOURCE",
}
# Compose's interpolation: ${NAME}, ${NAME:-default} (unset or empty), ${NAME-default} (unset).
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")
LOCALSTACK_PORT = 4566


def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(node, env: dict[str, str]):
    """The file as `docker compose config` sees it with `env` as the environment."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match) -> str:
        name, op, default = match["name"], match["op"], match["default"] or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return VARIABLE.sub(substitute, node)


@pytest.fixture(scope="module")
def compose() -> dict:
    """The file with an empty environment: what a user gets who sets nothing."""
    return interpolate(raw_compose(), {})


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def published_ports(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) for each short-syntax port."""
    ports = []
    for port in service.get("ports", []):
        host_ip, host_port, container_port = str(port).split(":")
        ports.append((host_ip, int(host_port), int(container_port)))
    return ports


# --- schema ------------------------------------------------------------------------------------------


def test_vendored_schema_is_the_recorded_copy():
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_follows_the_compose_specification(validator, compose):
    assert schema_errors(validator, raw_compose()) == []  # as written, with ${...} in place
    assert schema_errors(validator, compose) == []  # as Compose runs it


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "model", "imagee"), "scones-model"),  # a misspelt key
        (("services", "model", "healthcheck", "interval"), 5),  # a number where a duration string belongs
        (("networks", "scones", "driverr"), "bridge"),
    ],
)
def test_schema_rejects_what_compose_would_reject(validator, compose, path, value):
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert schema_errors(validator, broken) != []


def test_every_variable_is_known_and_has_a_default():
    text = COMPOSE_FILE.read_text()
    used = {match["name"]: match["op"] for match in VARIABLE.finditer(text)}
    assert set(used) == VARIABLES
    assert all(op == ":-" for op in used.values()), used  # unset or empty: `docker compose up` needs no setup
    assert "${" not in json.dumps(interpolate(raw_compose(), {}))  # no form this check does not understand


# --- LocalStack --------------------------------------------------------------------------------------


def test_localstack_is_pinned_to_the_last_release_that_needs_no_account(compose):
    image = compose["services"]["localstack"]["image"]
    repository, _, tag = image.partition(":")
    assert repository == "localstack/localstack"
    # Calendar versions (2026.03 on, and `latest`) exit without LOCALSTACK_AUTH_TOKEN; 4.14.0 was the last 4.x.
    assert tag == "4.14.0"


def test_a_token_and_another_image_pass_through():
    chosen = interpolate(
        raw_compose(), {"LOCALSTACK_IMAGE": "localstack/localstack:2026.6.0", "LOCALSTACK_AUTH_TOKEN": "ls-token"}
    )
    localstack = chosen["services"]["localstack"]
    assert localstack["image"] == "localstack/localstack:2026.6.0"
    assert environment(localstack)["LOCALSTACK_AUTH_TOKEN"] == "ls-token"


def test_lambda_containers_join_the_network_both_services_are_on(compose):
    network_name = environment(compose["services"]["localstack"])["LAMBDA_DOCKER_NETWORK"]
    # Compose prefixes network names with the project name unless `name` is set; LocalStack needs the real one.
    keys = [key for key, network in compose["networks"].items() if (network or {}).get("name") == network_name]
    assert len(keys) == 1, f"no network is named {network_name!r}"
    for name, service in compose["services"].items():
        assert keys[0] in service["networks"], name


def test_localstack_runs_lambda_containers_through_the_host_docker(compose):
    localstack = compose["services"]["localstack"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in localstack["volumes"]
    assert environment(localstack)["LAMBDA_IGNORE_ARCHITECTURE"] == "1"  # whatever the template's architecture


def test_localstack_healthcheck_is_the_endpoint_the_emulator_code_polls(compose):
    test = compose["services"]["localstack"]["healthcheck"]["test"]
    assert f"http://127.0.0.1:{LOCALSTACK_PORT}{emulator.HEALTH_PATH}" in test
    assert published_ports(compose["services"]["localstack"]) == [("127.0.0.1", LOCALSTACK_PORT, LOCALSTACK_PORT)]


# --- the model server --------------------------------------------------------------------------------


def test_model_image_is_the_one_sagemaker_local_mode_runs(compose):
    model = compose["services"]["model"]
    assert model["image"] == sagemaker_local.DEFAULT_IMAGE_URI
    assert (ROOT / model["build"]["context"] / model["build"]["dockerfile"]) == ROOT / "local_model" / "Dockerfile"


def test_model_serves_with_the_containers_own_command_and_port(compose):
    model = compose["services"]["model"]
    assert model["command"] == "serve"
    assert (ROOT / "local_model" / "bin" / "serve").is_file()  # copied onto the image's PATH (test_dockerfile)
    assert published_ports(model) == [("127.0.0.1", settings.DEFAULT_PORT, settings.DEFAULT_PORT)]
    assert str(settings.DEFAULT_PORT) in " ".join(model["healthcheck"]["test"])
    assert "/ping" in " ".join(model["healthcheck"]["test"])


def test_model_dir_is_mounted_read_only_where_the_server_looks(compose):
    (volume,) = compose["services"]["model"]["volumes"]
    source, target, mode = volume.split(":")
    assert (target, mode) == (settings.DEFAULT_MODEL_DIR, "ro")
    # By default the folder where `scones train` leaves model.tar.gz.
    assert Path(source) == Path(".") / steps.model_paths(DEFAULT_WORKDIR).tarball.parent


def test_model_environment_names_are_read_by_the_server(compose):
    env = environment(compose["services"]["model"])
    known = {value for name, value in vars(settings).items() if name.endswith("_VAR") and isinstance(value, str)}
    ours = {name for name in env if name.startswith("SCONES_")}
    assert ours and ours <= known, ours - known
    assert env[settings.CAPTURE_DESTINATION_VAR] == ""  # capture off unless the user sets a destination
    # The endpoint the stack names by default is the one the container answers.
    assert env[settings.ENDPOINT_NAME_VAR] == settings.DEFAULT_ENDPOINT_NAME == DeployConfig().model_endpoint_name
    # boto3 (the capture writer's S3 client) finds LocalStack by its service name on the shared network.
    assert env["AWS_ENDPOINT_URL"] == f"http://localstack:{LOCALSTACK_PORT}"


def compose_journey_model_urls() -> dict[str, str]:
    """The model URL each consumer of this file deploys the stack with: the README's compose journey
    (`scones deploy --model-url URL`) and the CI pass over it (tests/docker/run.py)."""
    readme = (ROOT / "README.md").read_text()
    journey = readme[readme.index("### 2. docker compose") : readme.index("### 3.")]
    (readme_url,) = re.findall(r"scones deploy --model-url (\S+)", journey)
    sys.path.insert(0, str(ROOT / "tests" / "docker"))
    try:
        spec = importlib.util.spec_from_file_location("compose_run", ROOT / "tests" / "docker" / "run.py")
        run = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run)
    finally:
        sys.path.remove(str(ROOT / "tests" / "docker"))
    return {"README": readme_url, "tests/docker/run.py": run.LAMBDA_MODEL_URL}


def test_classifier_reaches_the_model_by_service_name(compose):
    # The URL the stack is deployed with, which template.yaml hands to the classifier, names the model
    # service and a port it listens on, on the network the Lambdas' containers join.
    urls = compose_journey_model_urls()
    assert len(set(urls.values())) == 1, urls
    host, port = next(iter(urls.values())).removeprefix("http://").split(":")
    assert host in compose["services"]
    assert int(port) in [container for _, _, container in published_ports(compose["services"][host])]
    network = environment(compose["services"]["localstack"])["LAMBDA_DOCKER_NETWORK"]
    assert network in [compose["networks"][name].get("name", name) for name in compose["services"][host]["networks"]]
    assert "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME: !Ref ModelEndpointUrl" in (ROOT / "cloud" / "template.yaml").read_text()


def test_every_service_is_health_checked_and_bound_to_loopback(compose):
    for name, service in compose["services"].items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert published_ports(service), name
        assert all(host_ip == "127.0.0.1" for host_ip, _, _ in published_ports(service)), name


def test_the_project_is_named_in_the_file():
    # Compose v2 (what the README and CI use) reads the top-level name; v1 is not supported.
    assert raw_compose()["name"] == "scones"


def dockerfile_arg_defaults() -> dict[str, str]:
    """The Dockerfile's `ARG NAME=default` lines, quotes removed."""
    dockerfile = (ROOT / "local_model" / "Dockerfile").read_text()
    return {
        match["name"]: match["default"].strip('"')
        for match in re.finditer(r"^ARG (?P<name>\w+)=(?P<default>.+)$", dockerfile, re.MULTILINE)
    }


def test_the_model_build_arguments_default_to_the_dockerfiles_own(compose):
    # A user who sets nothing builds exactly what `docker build -f local_model/Dockerfile .` builds.
    args = compose["services"]["model"]["build"]["args"]
    assert args == {name: dockerfile_arg_defaults()[name] for name in ("BASE_IMAGE", "PIP_SOURCE")}


def test_the_offline_build_arguments_pass_through():
    env = {"SCONES_MODEL_BASE_IMAGE": "scones-base:bookworm", "SCONES_MODEL_PIP_SOURCE": "--no-index --find-links /w"}
    args = interpolate(raw_compose(), env)["services"]["model"]["build"]["args"]
    assert args == {"BASE_IMAGE": "scones-base:bookworm", "PIP_SOURCE": "--no-index --find-links /w"}


def test_the_docker_socket_mount_follows_docker_socket():
    (volume,) = interpolate(raw_compose(), {"DOCKER_SOCKET": "/tmp/d/docker.sock"})["services"]["localstack"]["volumes"]
    assert volume == "/tmp/d/docker.sock:/var/run/docker.sock"
