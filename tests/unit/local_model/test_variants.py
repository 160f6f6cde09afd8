"""local_model/variants.py: the endpoint's variants file, checked as SageMaker checks a configuration."""

from __future__ import annotations

import pytest

from local_model.variants import EndpointVariants, Variant, VariantsError, parse_variants, read_variants, write_variants


def entry(name, weight=1.0, url="/m.tar.gz"):
    return {"VariantName": name, "ModelDataUrl": url, "CurrentWeight": weight}


def test_no_file_is_one_all_traffic_variant(tmp_path):
    variants = read_variants(tmp_path / "missing.json", tmp_path / "model")
    assert variants == EndpointVariants((Variant("AllTraffic", tmp_path / "model", 1.0),))


def test_weights_share_the_traffic():
    variants = parse_variants({"ProductionVariants": [entry("A", 0.9), entry("B", 0.1)]})
    picks = [variants.pick(i / 1000).name for i in range(1000)]
    assert picks.count("A") == 900 and picks.count("B") == 100
    assert parse_variants({"ProductionVariants": [entry("A", 0), entry("B", 1)]}).pick(0.0).name == "B"


def test_a_file_round_trips(tmp_path):
    variants = parse_variants(
        {"ProductionVariants": [entry("A")], "ShadowProductionVariants": [entry("Shadow-B", url="/b.tar.gz")]}
    )
    assert read_variants(write_variants(tmp_path / "v.json", variants), tmp_path) == variants
    assert [v.name for v in variants.all] == ["A", "Shadow-B"] and variants.shadow[0].is_shadow


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({}, "no production variant"),
        ({"ProductionVariants": [entry("A", 0)]}, "weight 0"),
        ({"ProductionVariants": [entry("A", -1)]}, "negative weight"),
        ({"ProductionVariants": [entry("A"), entry("A")]}, "repeat"),
        ({"ProductionVariants": [entry("bad_name")]}, "does not match"),
        ({"ProductionVariants": [entry("Shadow-A")]}, "shadow variants"),
        ({"ProductionVariants": [entry("A")], "ShadowProductionVariants": [entry("B")]}, "shadow variants"),
        (
            {"ProductionVariants": [entry("A")], "ShadowProductionVariants": [entry("Shadow-B"), entry("Shadow-C")]},
            "one",
        ),
        ({"ProductionVariants": [{"VariantName": "A"}]}, "needs VariantName, ModelDataUrl"),
        ([], "not a JSON object"),
    ],
)
def test_what_sagemaker_would_refuse_is_a_named_error(raw, says):
    with pytest.raises(VariantsError, match=says):
        parse_variants(raw)
