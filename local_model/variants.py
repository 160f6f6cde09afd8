"""The endpoint's variants, as SageMaker routes them: production variants sharing the traffic by weight (each
request answered by exactly one, named in the answer's InvokedProductionVariant), and optionally shadow variants
that get a copy of every request and whose answers are captured, never returned.

SageMaker does this in front of the containers; locally the one model server does it, reading the variants from
a JSON file (SCONES_VARIANTS_FILE) at start and on every SIGHUP, so an `UpdateEndpointWeightsAndCapacities`
style weight step is: write the file, send SIGHUP. The file speaks SageMaker's names:

    {"ProductionVariants": [{"VariantName": "AllTraffic", "ModelDataUrl": "/path/model.tar.gz",
                             "CurrentWeight": 0.9},
                            {"VariantName": "Model-3f2a9c01ab12", "ModelDataUrl": "...", "CurrentWeight": 0.1}],
     "ShadowProductionVariants": [{"VariantName": "Shadow-...", "ModelDataUrl": "...", "CurrentWeight": 1}]}

Without the file the endpoint has one production variant, AllTraffic, serving the model directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from local_model.capture import SHADOW_VARIANT_PREFIX, VARIANT_NAME

# SageMaker's VariantName pattern.
VARIANT_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class VariantsError(ValueError):
    """The variants file is unreadable or describes no endpoint SageMaker would accept."""


@dataclass(frozen=True)
class Variant:
    name: str
    model_dir: Path  # a model folder or model.tar.gz
    weight: float = 1.0

    @property
    def is_shadow(self) -> bool:
        return self.name.startswith(SHADOW_VARIANT_PREFIX)


@dataclass(frozen=True)
class EndpointVariants:
    production: tuple[Variant, ...]
    shadow: tuple[Variant, ...] = ()

    def pick(self, draw: float) -> Variant:
        """The production variant a request goes to, for `draw` uniform in [0, 1): by weight."""
        total = sum(v.weight for v in self.production)
        point = draw * total
        for variant in self.production:
            if point < variant.weight:
                return variant
            point -= variant.weight
        return next(v for v in reversed(self.production) if v.weight > 0)

    @property
    def all(self) -> tuple[Variant, ...]:
        return self.production + self.shadow

    def to_json(self) -> dict:
        def entry(v: Variant) -> dict:
            return {"VariantName": v.name, "ModelDataUrl": str(v.model_dir), "CurrentWeight": v.weight}

        return {
            "ProductionVariants": [entry(v) for v in self.production],
            "ShadowProductionVariants": [entry(v) for v in self.shadow],
        }


def single_variant(model_dir: Path) -> EndpointVariants:
    return EndpointVariants((Variant(VARIANT_NAME, Path(model_dir), 1.0),))


def parse_variants(raw: dict, source: str = "variants") -> EndpointVariants:
    """Check `raw` as SageMaker checks an endpoint configuration: unique valid names, non-negative weights
    with some traffic, shadow names marked as such, at most one shadow."""

    def variant(entry, kind: str) -> Variant:
        try:
            name, url = entry["VariantName"], entry["ModelDataUrl"]
            weight = float(entry.get("CurrentWeight", 1.0))
        except (KeyError, TypeError, ValueError) as e:
            raise VariantsError(f"{source}: a {kind} variant needs VariantName, ModelDataUrl: {e!r}") from e
        if not isinstance(name, str) or not VARIANT_NAME_PATTERN.match(name):
            raise VariantsError(f"{source}: variant name {name!r} does not match {VARIANT_NAME_PATTERN.pattern}")
        if weight < 0:
            raise VariantsError(f"{source}: variant {name} has a negative weight {weight}")
        return Variant(name, Path(url), weight)

    if not isinstance(raw, dict):
        raise VariantsError(f"{source}: not a JSON object")
    production = tuple(variant(e, "production") for e in raw.get("ProductionVariants") or [])
    shadow = tuple(variant(e, "shadow") for e in raw.get("ShadowProductionVariants") or [])
    if not production:
        raise VariantsError(f"{source}: no production variant")
    if sum(v.weight for v in production) <= 0:
        raise VariantsError(f"{source}: every production variant has weight 0: no variant would answer")
    if len(shadow) > 1:
        raise VariantsError(f"{source}: SageMaker allows one shadow variant, {len(shadow)} are given")
    names = [v.name for v in production + shadow]
    if len(set(names)) != len(names):
        raise VariantsError(f"{source}: variant names repeat: {names}")
    if any(v.is_shadow for v in production) or any(not v.is_shadow for v in shadow):
        raise VariantsError(f"{source}: shadow variants, and only they, are named {SHADOW_VARIANT_PREFIX}...")
    return EndpointVariants(production, shadow)


def read_variants(path: Path | None, model_dir: Path) -> EndpointVariants:
    """The variants in `path`, or the one AllTraffic variant of `model_dir` when there is no such file."""
    if path is None or not Path(path).is_file():
        return single_variant(model_dir)
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise VariantsError(f"{path} is not readable JSON: {e}") from e
    return parse_variants(raw, str(path))


def write_variants(path: Path, variants: EndpointVariants) -> Path:
    """Replace the file whole (a reload never reads half of it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(variants.to_json(), indent=2) + "\n")
    partial.replace(path)
    return path
