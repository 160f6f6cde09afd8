"""The defaults are defined once (cloud/defaults.py); where a file outside Python repeats one (the template's
parameter Defaults, docker-compose.yml's image), it agrees, and every module uses the same objects."""

from __future__ import annotations

import yaml

from cloud import defaults, deploy
from cloud.artifacts import ROOT, TEMPLATE_PATH
from cloud.defaults import DEFAULT_LOCAL_IMAGE, DEFAULT_STACK_NAME, DEFAULT_WORKDIR
from cloud.template import read_template
from lambdas import contract
from local_model import settings
from scones.cli import common, environment
from scones.pipeline import deployment, sagemaker_local

TEMPLATE = read_template(TEMPLATE_PATH)


def parameter_default(name: str) -> str:
    return TEMPLATE["Parameters"][name]["Default"]


def test_the_template_repeats_the_defaults():
    assert float(parameter_default("ConfidenceThreshold")) == defaults.DEFAULT_CONFIDENCE_THRESHOLD
    assert parameter_default("EndpointInstanceType") == defaults.DEFAULT_INSTANCE_TYPE


def test_compose_builds_the_default_image():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["model"]["image"] == defaults.DEFAULT_LOCAL_IMAGE


def test_the_two_defined_elsewhere_are_those_the_code_that_cannot_import_this_uses():
    assert defaults.DEFAULT_CONFIDENCE_THRESHOLD is contract.DEFAULT_CONFIDENCE_THRESHOLD
    assert defaults.DEFAULT_ENDPOINT_NAME is settings.DEFAULT_ENDPOINT_NAME


def test_every_module_uses_the_one_definition():
    assert DEFAULT_STACK_NAME is environment.DEFAULT_STACK_NAME is defaults.DEFAULT_STACK_NAME
    assert DEFAULT_WORKDIR is common.DEFAULT_WORKDIR is defaults.DEFAULT_WORKDIR
    assert sagemaker_local.DEFAULT_IMAGE_URI is DEFAULT_LOCAL_IMAGE is defaults.DEFAULT_LOCAL_IMAGE
    options, config = deployment.DeployOptions(stack_name="s"), deploy.DeployConfig()
    assert options.instance_type == config.endpoint_instance_type == defaults.DEFAULT_INSTANCE_TYPE
    assert options.local_image == defaults.DEFAULT_LOCAL_IMAGE
    assert options.endpoint_name == config.model_endpoint_name == defaults.DEFAULT_ENDPOINT_NAME
