"""lambdas.contract's vocabulary: the predicted class, the outcome of an execution and the named error of a
failure, as the Lambdas, the workflow runner, the reports and the monitor all compute them."""

from __future__ import annotations

import json

import pytest

from lambdas.contract import (
    CLASSES,
    LOW_CONFIDENCE_ERROR,
    LowConfidenceError,
    Outcome,
    error_message,
    error_name,
    outcome_of,
    predicted_class,
)
from local_model import artifact


def test_the_class_list_of_the_container_is_the_contracts() -> None:
    # The model image ships without lambdas/: its copy of the class order must stay the same.
    assert artifact.CLASSES == CLASSES


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([0.9, 0.1], "bicycle"),
        ([0.2, 0.8], "motorcycle"),
        ((0.3, 0.7), "motorcycle"),
        ([0.5, 0.5], "bicycle"),  # a tie goes to the first class, as argmax does
        ([1, 0], "bicycle"),
    ],
)
def test_predicted_class_is_the_class_of_the_highest_score(scores, expected) -> None:
    assert predicted_class(scores) == expected


@pytest.mark.parametrize("scores", [None, [], [0.9], [0.1, 0.2, 0.7], "0.9,0.1", [True, False], ["0.9", "0.1"]])
def test_predicted_class_of_anything_but_one_number_per_class_is_none(scores) -> None:
    assert predicted_class(scores) is None


def lambda_cause(name: str, message: str) -> str:
    return json.dumps({"errorMessage": message, "errorType": name})


def test_a_named_error_is_its_own_name() -> None:
    cause = lambda_cause(LOW_CONFIDENCE_ERROR, "top score 0.6 is below the threshold 0.93")
    assert error_name(LOW_CONFIDENCE_ERROR, cause) == LOW_CONFIDENCE_ERROR == LowConfidenceError.__name__


@pytest.mark.parametrize("unnamed", ["Runtime.HandlerError", "Lambda.Unknown"])
def test_an_unnamed_lambda_error_is_named_by_its_message(unnamed) -> None:
    cause = lambda_cause(unnamed, "EndpointUnavailableError: the endpoint did not answer")
    assert error_name(unnamed, cause) == "EndpointUnavailableError"
    assert error_message(cause) == "EndpointUnavailableError: the endpoint did not answer"


def test_an_unnamed_error_without_a_name_in_its_message_stays_unnamed() -> None:
    assert error_name("Runtime.HandlerError", lambda_cause("x", "something broke")) == "Runtime.HandlerError"
    assert error_name("Runtime.HandlerError", "not json at all") == "Runtime.HandlerError"
    assert error_message("not json at all") == "not json at all"
    assert error_message(None) == ""


@pytest.mark.parametrize(
    ("status", "error", "cause", "expected"),
    [
        ("SUCCEEDED", None, None, Outcome.ROUTED),
        ("FAILED", LOW_CONFIDENCE_ERROR, None, Outcome.REJECTED),
        ("FAILED", "Runtime.HandlerError", lambda_cause("x", "LowConfidenceError: top score 0.6"), Outcome.REJECTED),
        ("FAILED", "EndpointUnavailableError", None, Outcome.FAILED),
        ("TIMED_OUT", None, None, Outcome.FAILED),
        ("ABORTED", None, None, Outcome.FAILED),
    ],
)
def test_the_outcome_of_an_execution(status, error, cause, expected) -> None:
    assert outcome_of(status, error, cause) is expected


def test_outcomes_are_plain_strings_in_json() -> None:
    assert json.dumps({Outcome.ROUTED.value: 1, "outcome": Outcome.REJECTED}) == '{"routed": 1, "outcome": "rejected"}'
    assert [outcome.value for outcome in Outcome] == ["routed", "rejected", "failed"]
