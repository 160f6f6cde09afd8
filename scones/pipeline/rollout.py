"""Model updates on the local endpoint, as SageMaker's deployment guardrails and shadow variants do them: a
canary step (a share of the traffic to the new version's production variant), a bake during which the new
variant's own low-confidence rate, error rate and latency are watched (the alarm condition of
cloud/guardrails.py, the template's), then the rest of the traffic, or a rollback by itself; a shadow variant
for a challenger; and the comparison of champion and challenger on the same requests.

A step is `UpdateEndpointWeightsAndCapacities` done locally: write the endpoint's variants file
(local_model/variants.py), ask the model server to reload it (SIGHUP), wait until it has. Requests in flight
finish on the variant they were routed to, so none is lost or answered twice.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloud.guardrails import DEFAULT_GUARDRAILS, Guardrails, alarms_in
from local_model.capture import SHADOW_VARIANT_PREFIX
from local_model.capture_reader import ALL_VARIANTS, read_captured_inferences
from local_model.settings import VARIANTS_FILE_VAR
from local_model.variants import EndpointVariants, Variant, read_variants, write_variants
from scones.errors import StepFailedError
from scones.local.model_server import reload_served_model
from scones.monitoring.compare import Comparison, compare_records
from scones.monitoring.report import percentile
from scones.pipeline import registry

VARIANTS_FILE = "endpoint-variants.json"  # in the workdir: the endpoint `scones up` / `deploy` serve
WATCH_INTERVAL_S = 1.0  # how often the bake reads the new variant's answers
REPORT_EVERY_S = 5.0  # how often the bake prints where it stands


class RolloutError(StepFailedError):
    """A model update could not be applied (the server refused the variants, or is not this session's)."""


@dataclass(frozen=True)
class VariantWindow:
    """What one variant did over the window watched."""

    invocations: int  # answered, with a result or an error
    errors: int
    low_confidence: int  # answers whose top score is under the confidence threshold
    latencies_ms: tuple[float, ...]

    @property
    def answered(self) -> int:
        return self.invocations - self.errors

    @property
    def error_rate(self) -> float:
        return self.errors / self.invocations if self.invocations else 0.0

    @property
    def low_confidence_rate(self) -> float:
        return self.low_confidence / self.answered if self.answered else 0.0

    @property
    def latency_p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99) or 0.0


def variants_path(workdir: Path) -> Path:
    return Path(workdir) / VARIANTS_FILE


def production_name(version: registry.ModelVersion) -> str:
    return f"Model-{version.short_id}"


def shadow_name(version: registry.ModelVersion) -> str:
    return f"{SHADOW_VARIANT_PREFIX}-{version.short_id}"


@dataclass(frozen=True)
class LocalEndpoint:
    """The model server behind the stack, and the variants file it reads on SIGHUP."""

    url: str
    pid: int
    variants_file: Path
    model_dir: Path  # what its AllTraffic variant serves when there is no variants file

    def variants(self) -> EndpointVariants:
        return read_variants(self.variants_file, self.model_dir)

    def apply(self, variants: EndpointVariants) -> int:
        """One UpdateEndpoint step: the server routes by `variants` once this returns (its model version)."""
        write_variants(self.variants_file, variants)
        try:
            version = reload_served_model(self.url, self.pid)
        except Exception as e:
            raise RolloutError(f"the model server {self.url} did not apply the variants: {e}") from e
        serving = in_service(self.url)
        if serving != {v.name: v.weight for v in variants.all}:
            raise RolloutError(
                f"the model server {self.url} serves {serving} after the reload, not the variants of "
                f"{self.variants_file}: it was started without {VARIANTS_FILE_VAR} (an older `scones up` or "
                "`scones deploy`); restart it"
            )
        return version


def in_service(url: str) -> dict[str, float]:
    """The variants the server routes by now, with their weights (GET /variants)."""
    with urllib.request.urlopen(f"{url}/variants", timeout=10) as response:
        report = json.loads(response.read())
    return {v["VariantName"]: v["CurrentWeight"] for v in report["variants"] if v["InService"]}


def read_window(url: str, variant_name: str, since: float, threshold: float) -> VariantWindow:
    """What `variant_name` answered since unix time `since`, from the server's own record (GET /variants)."""
    with urllib.request.urlopen(f"{url}/variants?since={since}", timeout=10) as response:
        report = json.loads(response.read())
    for variant in report["variants"]:
        if variant["VariantName"] == variant_name:
            answers = variant["Answers"]
            scores = [top for _, _, top, error in answers if not error and top is not None]
            return VariantWindow(
                invocations=len(answers),
                errors=sum(1 for *_, error in answers if error),
                low_confidence=sum(1 for top in scores if top < threshold),
                latencies_ms=tuple(ms for _, ms, _, _ in answers),
            )
    return VariantWindow(0, 0, 0, ())


def describe_window(window: VariantWindow) -> str:
    return (
        f"{window.invocations} answers, low confidence {window.low_confidence_rate:.0%}, "
        f"errors {window.error_rate:.0%}, p99 {window.latency_p99_ms:.0f} ms"
    )


@dataclass(frozen=True)
class RolloutResult:
    completed: bool  # all traffic on the new version; False: rolled back
    variant: str
    alarms: list[str]  # what fired (empty when completed)
    window: VariantWindow  # the new variant's answers over the bake
    seconds: float  # from the first step to the last


def with_canary(current: EndpointVariants, canary: Variant, percent: float) -> EndpointVariants:
    """`current`'s production variants sharing (100 - percent)% by their weights, `canary` the rest."""
    total = sum(v.weight for v in current.production) or 1.0
    keep = (100.0 - percent) / 100.0
    kept = tuple(Variant(v.name, v.model_dir, round(v.weight / total * keep, 6)) for v in current.production)
    return EndpointVariants((*kept, Variant(canary.name, canary.model_dir, round(percent / 100.0, 6))), current.shadow)


def roll_out(
    endpoint: LocalEndpoint,
    workdir: Path,
    version: registry.ModelVersion,
    *,
    canary_percent: float,
    bake_s: float,
    threshold: float,
    progress: Callable[[str], None],
    guardrails: Guardrails = DEFAULT_GUARDRAILS,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> RolloutResult:
    """Shift `canary_percent`% of the traffic to `version`, bake `bake_s` seconds watching its variant, then
    shift the rest (it becomes the champion) or, as soon as an alarm fires, restore the variants as they were.
    A 100% canary is an all-at-once update, still watched for the bake."""
    before = endpoint.variants()
    name = production_name(version)
    if any(v.name == name for v in before.production):
        raise RolloutError(f"model version {version.short_id} already serves as production variant {name}")
    new = Variant(name, registry.version_tarball(workdir, version.id), 1.0)
    started = clock()
    step = with_canary(before, new, canary_percent) if canary_percent < 100 else EndpointVariants((new,), before.shadow)
    endpoint.apply(step)
    shares = ", ".join(f"{v.name} {v.weight:.0%}" for v in step.production)
    progress(f"step 1: {canary_percent:g}% of the traffic to {name} (model {version.short_id}): {shares}")
    progress(f"baking {bake_s:g} s: rolls back if {name}'s {describe_guardrails(guardrails)}")
    window = VariantWindow(0, 0, 0, ())
    last_report = clock()
    while True:
        sleep(WATCH_INTERVAL_S)
        window = read_window(endpoint.url, name, started, threshold)
        alarms = alarms_in(window, guardrails)
        elapsed = clock() - started
        if alarms:
            endpoint.apply(before)
            progress(f"ALARM after {elapsed:.0f} s: {'; '.join(alarms)} ({describe_window(window)})")
            progress(f"rolled back: {describe_variants(before)} (took {clock() - started:.1f} s in all)")
            return RolloutResult(False, name, alarms, window, clock() - started)
        if elapsed >= bake_s:
            break
        if clock() - last_report >= REPORT_EVERY_S:
            progress(f"  {elapsed:.0f} s: {name}: {describe_window(window)}")
            last_report = clock()
    progress(f"baked {bake_s:g} s without an alarm: {name}: {describe_window(window)}")
    if window.invocations < guardrails.min_invocations:
        progress(
            f"note: {window.invocations} answers are fewer than the {guardrails.min_invocations} the alarms need to "
            "judge (CloudWatch's missing data): the bake proved little; a longer --bake or more traffic would"
        )
    if canary_percent < 100:
        endpoint.apply(EndpointVariants((new,), before.shadow))
    registry.set_alias(workdir, "champion", version.id)
    progress(f"step 2: all traffic to {name}; model {version.short_id} is the champion ({clock() - started:.1f} s)")
    return RolloutResult(True, name, [], window, clock() - started)


def describe_guardrails(g: Guardrails) -> str:
    return (
        f"low-confidence rate > {g.low_confidence_rate:.0%}, error rate > {g.error_rate:.0%} or p99 latency > "
        f"{g.latency_p99_ms:.0f} ms (over at least {g.min_invocations} answers)"
    )


def describe_variants(variants: EndpointVariants) -> str:
    text = ", ".join(f"{v.name} {v.weight:.0%}" for v in variants.production)
    return text + "".join(f", shadow {v.name}" for v in variants.shadow)


def start_shadow(endpoint: LocalEndpoint, workdir: Path, version: registry.ModelVersion) -> EndpointVariants:
    """Run `version` as the shadow variant (it becomes the challenger): a copy of every request, answers
    captured only."""
    current = endpoint.variants()
    shadow = Variant(shadow_name(version), registry.version_tarball(workdir, version.id), 1.0)
    updated = EndpointVariants(current.production, (shadow,))
    endpoint.apply(updated)
    registry.set_alias(workdir, "challenger", version.id)
    return updated


def stop_shadow(endpoint: LocalEndpoint) -> EndpointVariants:
    current = endpoint.variants()
    updated = EndpointVariants(current.production)
    endpoint.apply(updated)
    return updated


def compare_variants(
    destination: str, endpoint_name: str, url: str | None, threshold: float, client=None
) -> Comparison:
    """Champion against challenger on the requests both answered (scones/monitoring/compare.py), read from the
    captures at `destination`; latencies from the server's record when `url` is given."""
    records = read_captured_inferences(destination, endpoint_name, client=client, variants=ALL_VARIANTS)
    comparison = compare_records(list(records), threshold, read_latencies(url) if url else {})
    if comparison is None:
        raise RolloutError(
            f"no request answered by both a production and a shadow variant in {destination}: start one with "
            "`scones shadow VERSION`, send traffic, and wait a second for the captures to be written"
        )
    return comparison


def read_latencies(url: str) -> dict[str, list[float]]:
    """Each variant's recent latencies (ms) from the server's record (GET /variants)."""
    with urllib.request.urlopen(f"{url}/variants", timeout=10) as response:
        report = json.loads(response.read())
    return {v["VariantName"]: [ms for _, ms, _, _ in v["Answers"]] for v in report["variants"]}
