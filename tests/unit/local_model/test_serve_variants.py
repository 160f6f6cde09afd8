"""The model server as an endpoint with variants: weighted production variants named in every answer and in
their captures, a shadow variant's answers captured and never returned, weight steps by SIGHUP-style reload."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from starlette.testclient import TestClient

from local_model import serve
from local_model.capture_reader import ALL_VARIANTS, read_captured_inferences
from local_model.settings import read_serve_settings
from local_model.variants import EndpointVariants, Variant, write_variants
from tests.helpers.image_samples import encode, random_pixels
from tests.helpers.model_variants import make_unsure_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RUNTIME = "/endpoints/scones-image-classifier/invocations"
HEADER = "x-amzn-invoked-production-variant"


@pytest.fixture(scope="module")
def unsure_tarball(model_dir, tmp_path_factory):
    return make_unsure_model(model_dir, tmp_path_factory.mktemp("unsure"))


def settings(model_dir, variants_file, capture=None):
    env = {"SCONES_MODEL_DIR": str(model_dir), "SCONES_VARIANTS_FILE": str(variants_file)}
    if capture:
        env |= {"SCONES_CAPTURE_DESTINATION": str(capture), "SCONES_CAPTURE_FLUSH_SECONDS": "3600"}
    return read_serve_settings(env)


def image(seed=0) -> bytes:
    return encode(Image.fromarray(random_pixels(32, 32, seed=seed)), "PNG")


def reload(client) -> None:
    state = client.app.state.server
    routing, models, error = serve.load_endpoint(state.settings, state)
    assert error is None
    serve.install(state, routing, models)


def test_weights_route_each_request_to_one_named_variant(model_dir, unsure_tarball, tmp_path):
    variants_file = write_variants(
        tmp_path / "v.json",
        EndpointVariants((Variant("Champion", model_dir, 0.5), Variant("Canary", unsure_tarball, 0.5))),
    )
    with TestClient(serve.create_app(settings(model_dir, variants_file))) as client:
        answers = [client.post(RUNTIME, content=image(), headers={"Content-Type": "image/png"}) for _ in range(60)]
        assert all(a.status_code == 200 for a in answers)
        named = [a.headers[HEADER] for a in answers]
        assert set(named) == {"Champion", "Canary"}
        by_name = {
            name: {json.dumps(a.json()) for a, n in zip(answers, named, strict=True) if n == name} for name in named
        }
        assert len(by_name["Champion"]) == len(by_name["Canary"]) == 1  # one image: one answer per model
        assert by_name["Champion"] != by_name["Canary"]
        assert max(json.loads(next(iter(by_name["Canary"])))) < 0.51  # the unsure model: about 50/50
        report = {v["VariantName"]: v for v in client.get("/variants").json()["variants"]}
        assert report["Champion"]["Invocations"] + report["Canary"]["Invocations"] == 60
        assert report["Canary"]["Invocations"] == named.count("Canary")
        assert all(top < 0.51 for _, _, top, _ in report["Canary"]["Answers"])

        # A weight step: all to the canary, nothing loaded again.
        before = client.app.state.server.models["Canary"]
        write_variants(variants_file, EndpointVariants((Variant("Canary", unsure_tarball, 1.0),)))
        reload(client)
        assert client.app.state.server.models["Canary"] is before
        answers = [
            client.post("/invocations", content=image(), headers={"Content-Type": "image/png"}) for _ in range(5)
        ]
        assert {a.headers[HEADER] for a in answers} == {"Canary"}
        assert client.get("/ping").json()["variants"] == {"Canary": 1.0}


def test_a_shadow_answers_a_copy_captured_and_never_returned(model_dir, unsure_tarball, tmp_path):
    variants_file = write_variants(
        tmp_path / "v.json",
        EndpointVariants((Variant("AllTraffic", model_dir, 1.0),), (Variant("Shadow-Unsure", unsure_tarball, 1.0),)),
    )
    capture = tmp_path / "capture"
    with TestClient(serve.create_app(settings(model_dir, variants_file, capture))) as client:
        answers = [
            client.post(RUNTIME, content=image(seed), headers={"Content-Type": "image/png"}) for seed in range(8)
        ]
        assert {a.headers[HEADER] for a in answers} == {"AllTraffic"}
        returned = [a.json() for a in answers]
    records = list(read_captured_inferences(capture, variants=ALL_VARIANTS))
    by_variant = {}
    for record in records:
        by_variant.setdefault(record.variant_name, {})[record.inference_id] = record
    assert set(by_variant) == {"AllTraffic", "Shadow-Unsure"}
    assert set(by_variant["AllTraffic"]) == set(by_variant["Shadow-Unsure"])  # the same requests, paired
    assert len(by_variant["AllTraffic"]) == 8
    assert sorted(map(json.dumps, (r.output for r in by_variant["AllTraffic"].values()))) == sorted(
        map(json.dumps, returned)
    )
    assert all(max(r.output) < 0.51 for r in by_variant["Shadow-Unsure"].values())
    for inference_id, shadow in by_variant["Shadow-Unsure"].items():
        assert shadow.input_body == by_variant["AllTraffic"][inference_id].input_body
        assert shadow.output != by_variant["AllTraffic"][inference_id].output
    # Readers of production traffic (monitoring, the ledger) see the production answers only.
    assert {r.variant_name for r in read_captured_inferences(capture)} == {"AllTraffic"}


def test_an_unloadable_variant_keeps_the_endpoint_serving(model_dir, tmp_path):
    variants_file = write_variants(tmp_path / "v.json", EndpointVariants((Variant("A", model_dir, 1.0),)))
    with TestClient(serve.create_app(settings(model_dir, variants_file))) as client:
        write_variants(variants_file, EndpointVariants((Variant("A", model_dir, 0.5), Variant("B", tmp_path, 0.5))))
        state = client.app.state.server
        routing, _, error = serve.load_endpoint(state.settings, state)
        assert routing is None and "variant B" in error
        assert (
            client.post("/invocations", content=image(), headers={"Content-Type": "image/png"}).headers[HEADER] == "A"
        )
