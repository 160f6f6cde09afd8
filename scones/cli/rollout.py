"""The commands that ship a new model safely on the local endpoint: `deploy --model V --canary P --bake S`
(called by `deploy`), `shadow` (a challenger on live traffic) and `compare` (champion against challenger)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloud.defaults import DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_ENDPOINT_NAME, DEFAULT_WORKDIR
from cloud.guardrails import DEFAULT_GUARDRAILS, Guardrails
from scones.cli.common import Workdir, app, recorded_state, reports_errors, say
from scones.errors import EXIT_FAILED, EnvironmentProblemError
from scones.local.connection import TargetKind, connect
from scones.local.state_file import SessionState, updating
from scones.monitoring.compare import format_comparison
from scones.pipeline import registry, rollout
from scones.pipeline.steps import model_paths


def session_endpoint(workdir: Path) -> tuple[SessionState, rollout.LocalEndpoint]:
    """The running session's model server as a LocalEndpoint; EnvironmentProblemError when there is none."""
    state = recorded_state(workdir, TargetKind.emulator)
    if state is None or not state.model_server_pid or not state.model_server_alive:
        raise EnvironmentProblemError(
            f"no model server of `scones up` or `scones deploy` runs from {workdir}: start `scones up` first "
            "(model updates are rehearsed on the running endpoint)"
        )
    endpoint = rollout.LocalEndpoint(
        state.model_server_url, state.model_server_pid, rollout.variants_path(workdir), model_paths(workdir).model_dir
    )
    return state, endpoint


def deploy_version(
    workdir: Path, name: str, canary: float | None, bake: float, guardrails: Guardrails = DEFAULT_GUARDRAILS
) -> None:
    """`scones deploy --model NAME [--canary P] [--bake S]`: the rollout, printed step by step; exit 1 if it
    rolled back."""
    version = registry.resolve_version(workdir, name)
    state, endpoint = session_endpoint(workdir)
    threshold = float(state.outputs.get("ConfidenceThreshold", DEFAULT_CONFIDENCE_THRESHOLD))
    percent = 100.0 if canary is None else canary
    say(f"deploying model {version.short_id} to {endpoint.url}: " + rollout.describe_variants(endpoint.variants()))
    with updating(workdir):
        result = rollout.roll_out(
            endpoint,
            workdir,
            version,
            canary_percent=percent,
            bake_s=bake,
            threshold=threshold,
            progress=_indented,
            guardrails=guardrails,
        )
    if not result.completed:
        say(f"model {version.short_id} was rolled back: {'; '.join(result.alarms)}")
        raise typer.Exit(EXIT_FAILED)
    say(f"model {version.short_id} serves all traffic")


def _indented(line: str) -> None:
    say(f"  {line}")


@app.command(
    short_help="Run a model version as a shadow variant on live traffic.",
    epilog="\b\nExamples:\n  scones shadow 3f2a9c01      # then traffic, then: scones compare\n  scones shadow --stop",
)
@reports_errors
def shadow(
    version: Annotated[
        str | None, typer.Argument(help="model version (id prefix, or champion/challenger)", show_default=False)
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="remove the shadow variant")] = False,
    workdir: Workdir = DEFAULT_WORKDIR,
) -> None:
    """Run VERSION as the endpoint's shadow variant (it becomes the challenger): every request is also sent to
    it, its answers are captured under its own variant name and never returned; callers get the production
    variants' answers only, as with SageMaker's ShadowProductionVariants. `scones compare` reports both."""
    if (version is None) == (not stop):
        raise typer.BadParameter("give a VERSION, or --stop")
    _, endpoint = session_endpoint(workdir)
    with updating(workdir):
        if stop:
            variants = rollout.stop_shadow(endpoint)
            say(f"no shadow variant now: {rollout.describe_variants(variants)}")
            return
        chosen = registry.resolve_version(workdir, version)
        variants = rollout.start_shadow(endpoint, workdir, chosen)
    say(f"model {chosen.short_id} is the challenger, in shadow: {rollout.describe_variants(variants)}")
    say("its answers are captured, never returned; `scones compare` reports champion against challenger")


@app.command(
    short_help="Champion against challenger on the same requests.",
    epilog="\b\nExample:\n  scones compare",
)
@reports_errors
def compare(workdir: Workdir = DEFAULT_WORKDIR) -> None:
    """Pair each request the shadow variant answered with the production answer to it (their captures share
    an inferenceId) and report agreement, confidence, low-confidence rate and latency of both."""
    state = recorded_state(workdir, TargetKind.emulator)
    if state is None or not state.capture_destination:
        raise EnvironmentProblemError(f"no deployment with data capture is recorded in {workdir}: start `scones up`")
    threshold = float(state.outputs.get("ConfidenceThreshold", DEFAULT_CONFIDENCE_THRESHOLD))
    endpoint_name = state.outputs.get("ModelEndpointName", DEFAULT_ENDPOINT_NAME)
    url = state.model_server_url if state.model_server_alive else None
    with connect(TargetKind.emulator, state) as connection:
        comparison = rollout.compare_variants(
            state.capture_destination, endpoint_name, url, threshold, client=connection.aws.client("s3")
        )
    for line in format_comparison(comparison):
        say(line)
