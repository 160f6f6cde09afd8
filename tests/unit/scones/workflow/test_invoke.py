"""scones/workflow/invoke.py without an emulator: the names a function goes by, and reading the event."""

from __future__ import annotations

import pytest

from cloud.artifacts import TEMPLATE_PATH
from cloud.template import read_template
from scones.errors import EXIT_USAGE
from scones.workflow.invoke import FUNCTIONS, EventFileError, UnknownFunctionError, handler_of, read_event


def test_every_handler_names_a_function_of_the_template():
    resources = read_template(TEMPLATE_PATH)["Resources"]
    for handler, logical_id in FUNCTIONS.items():
        assert resources[logical_id]["Type"] == "AWS::Lambda::Function"
        assert resources[logical_id]["Properties"]["Handler"] == f"lambdas.{handler}.handler"


@pytest.mark.parametrize(
    "name",
    ["classify_image", "classify-image", "ClassifyImageFunction", "lambdas.classify_image", "ClassifyImage"],
)
def test_a_function_goes_by_its_handler_its_hyphenated_or_its_logical_name(name):
    assert handler_of(name) == "classify_image"


def test_an_unknown_function_is_a_usage_error_listing_the_known_ones():
    with pytest.raises(UnknownFunctionError, match="choose one of serialize_image_data, classify_image") as error:
        handler_of("classify")
    assert error.value.exit_code == EXIT_USAGE


def test_the_event_comes_from_a_file_from_stdin_or_is_empty(tmp_path):
    (tmp_path / "event.json").write_text('{"s3_bucket": "b"}')
    assert read_event(str(tmp_path / "event.json")) == {"s3_bucket": "b"}
    assert read_event("-", '{"s3_key": "k"}') == {"s3_key": "k"}
    assert read_event(None) == {}


@pytest.mark.parametrize(
    ("source", "stdin", "message"),
    [
        ("missing.json", None, "cannot read it"),
        ("not-json.json", None, "is not JSON"),
        ("-", "{", "the event in stdin is not JSON"),
    ],
)
def test_an_unreadable_event_is_a_named_usage_error(tmp_path, monkeypatch, source, stdin, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-json.json").write_text("s3_bucket: b")
    with pytest.raises(EventFileError, match=message) as error:
        read_event(source, stdin)
    assert error.value.exit_code == EXIT_USAGE
