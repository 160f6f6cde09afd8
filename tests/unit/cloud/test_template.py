"""cloud/template.py: CloudFormation's short-form tags read as their long form, with PyYAML's SafeLoader."""

from __future__ import annotations

import pytest
from cfnlint.decode import decode_str

from cloud.artifacts import TEMPLATE_PATH
from cloud.solution import SOLUTION_RUNTIME
from cloud.template import TemplateError, load_template

SHORT_FORMS = """
Conditions:
  OnAws: !Equals [!Ref CreateModelEndpoint, "true"]
Resources:
  Thing:
    Type: AWS::S3::Bucket
    Condition: OnAws
    Properties:
      BucketName: !Sub "${AWS::StackName}-images"
      Arn: !GetAtt Other.Arn
      Listed: !GetAtt [Other, Arn]
      Chosen: !If [OnAws, !Ref Other, !Ref "AWS::NoValue"]
      Joined: !Join ["", [a, !Ref Other]]
      Mapped: !Base64 {"Fn::Sub": "x"}
"""


def test_short_forms_become_the_long_forms():
    template = load_template(SHORT_FORMS)
    assert template["Conditions"]["OnAws"] == {"Fn::Equals": [{"Ref": "CreateModelEndpoint"}, "true"]}
    properties = template["Resources"]["Thing"]["Properties"]
    assert properties["BucketName"] == {"Fn::Sub": "${AWS::StackName}-images"}
    assert properties["Arn"] == properties["Listed"] == {"Fn::GetAtt": ["Other", "Arn"]}
    assert properties["Chosen"] == {"Fn::If": ["OnAws", {"Ref": "Other"}, {"Ref": "AWS::NoValue"}]}
    assert properties["Joined"] == {"Fn::Join": ["", ["a", {"Ref": "Other"}]]}
    assert properties["Mapped"] == {"Fn::Base64": {"Fn::Sub": "x"}}


def test_our_template_reads_as_cfn_lint_reads_it():
    text = TEMPLATE_PATH.read_text()
    ours, theirs = load_template(text), decode_str(text)[0]
    assert ours["Conditions"] == theirs["Conditions"]
    assert list(ours["Resources"]) == list(theirs["Resources"])
    assert {k: v["Type"] for k, v in ours["Resources"].items()} == {
        k: v["Type"] for k, v in theirs["Resources"].items()
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Resources: [unclosed", "not valid YAML"),
        ("Parameters: {}\n", "no Resources section"),
        ("- a list\n", "no Resources section"),
        ("Resources:\n  X: !!python/object:os.system {}\n", "not valid YAML"),  # SafeLoader's refusal stays
    ],
)
def test_what_is_not_a_template_is_named(text, says):
    with pytest.raises(TemplateError, match=says):
        load_template(text)


def test_solution_functions_run_on_the_templates_python():
    """`scones solution run` creates functions outside the template: on the same runtime as its functions."""
    runtimes = {
        resource["Properties"]["Runtime"]
        for resource in load_template(TEMPLATE_PATH.read_text())["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    assert runtimes == {SOLUTION_RUNTIME}
