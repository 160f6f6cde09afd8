"""cloud/template.yaml read as data, with PyYAML: CloudFormation's short-form tags (`!Ref X`,
`!GetAtt A.B`, `!Sub ...`, `!If [...]`) become the long form (`{"Ref": "X"}`, `{"Fn::GetAtt": ["A", "B"]}`)
as CloudFormation itself reads them. Plain YAML loaders refuse those tags; cfn-lint, which reads them too,
is a development tool and not a dependency of the promotion."""

from __future__ import annotations

from pathlib import Path

import yaml


class TemplateError(ValueError):
    """The template is not YAML, or lacks what the promotion reads from it."""


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that also accepts every `!Tag`: anything else is still refused as SafeLoader refuses it."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    name = suffix if suffix == "Ref" or suffix == "Condition" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":  # `!GetAtt Resource.Attribute` is the list ["Resource", "Attribute"]
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _tagged)


def load_template(text: str) -> dict:
    try:
        template = yaml.load(text, Loader=_CloudFormationLoader)
    except yaml.YAMLError as e:
        raise TemplateError(f"the template is not valid YAML: {e}") from e
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise TemplateError("the template has no Resources section")
    return template


def read_template(path: Path) -> dict:
    return load_template(Path(path).read_text())
