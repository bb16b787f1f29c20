"""The web app's handlers through FastAPI's test client, on tiny models (fast)."""
import json
import os
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from app_fixtures import (FakePredictor, checkpoint, make_state, photo,  # noqa: E402
                          review_set, upload, wait_job)
from fewshot_det.app import create_app  # noqa: E402
from fewshot_det.data.support_file import read_support_file  # noqa: E402
from fewshot_det.evaluation import evaluate  # noqa: E402


@pytest.fixture
def siamese(tmp_path):
    """(client, state) on a tiny siamese model whose trained classes are a, b, c."""
    photos = tmp_path / "photos"
    for i in range(3):
        photo(photos / f"p{i}.jpg", seed=i)
    state = make_state(tmp_path, checkpoint(tmp_path), roots=[str(photos)])
    with TestClient(create_app(state)) as client:
        yield client, state


def _uploaded(client, tmp_path, name="q.jpg", seed=5):
    r = upload(client, photo(tmp_path / "in" / name, seed=seed))
    assert r.status_code == 200, r.text
    return r.json()["images"][0]


def _teach(client, name, image, box, **kw):
    r = client.post("/api/classes", json=dict(name=name, image=image, box=box, **kw))
    return r if r.status_code != 200 else wait_job(client, r.json())


def test_pages_render_with_the_models_capability(siamese):
    client, _ = siamese
    assert client.get("/", follow_redirects=False).headers["location"] == "/teach"
    for page in ("teach", "detect", "review"):
        r = client.get(f"/{page}")
        assert r.status_code == 200 and 'id="message"' in r.text
    assert "support-conditioned" in client.get("/teach").text
    assert client.get("/static/app.js").status_code == 200


def test_a_drawn_box_teaches_a_class_that_is_then_detected(siamese, tmp_path):
    client, state = siamese
    image = _uploaded(client, tmp_path)
    job = _teach(client, "nest", image["id"], [32, 24, 64, 48], search=image["id"])
    assert job["status"] == "done", job
    result = job["result"]
    assert result["class"] == "nest" and result["state"]["taught"] == {"nest": 1}
    assert "nest" in result["state"]["detectable"]
    dets = result["detections"]
    assert dets["image"]["id"] == image["id"] and len(dets["boxes"]) > 0
    assert set(dets["names"]) == {"nest"}  # the random trained classes have no prototype
    assert dets["scores"] == sorted(dets["scores"], reverse=True)
    results = client.get(f"/api/detect/{job['id']}/results.json").json()
    assert len(results) == len(dets["boxes"]) and results[0]["image_id"] == "q"
    assert results[0]["category_name"] == "nest" and len(results[0]["bbox"]) == 4
    # a second example from another photo; then the class is searched on a third
    other = _uploaded(client, tmp_path, "r.jpg", seed=6)
    job = _teach(client, "nest", other["id"], [10, 10, 60, 50], new=False)
    assert job["status"] == "done" and job["result"]["examples"] == 2
    third = _uploaded(client, tmp_path, "s.jpg", seed=7)
    job = wait_job(client, client.post("/api/detect", json={"images": [third["id"]]}).json())
    assert job["status"] == "done" and set(job["result"]["images"][0]["names"]) == {"nest"}
    assert [n for n, _ in state.session.taught.items()] == ["nest"]


@pytest.mark.parametrize("name, box, message", [
    ("", [10, 10, 50, 50], "give the class a name"),
    ("   ", [10, 10, 50, 50], "give the class a name"),
    ("b", [10, 10, 50, 50], "the name 'b' is taken: the model was trained"),
    ("nest", [30, 30, 30, 60], "the box is 0 x 30 px inside the photo"),
    ("nest", [500, 500, 600, 600], "the box is 0 x 0 px inside the photo"),
    ("nest", [1, 2, 3], r"a box is 4 finite numbers"),
    ("nest", [1, 2, None, 4], r"a box is 4 finite numbers"),
])
def test_a_bad_class_or_box_is_refused_with_a_message(siamese, tmp_path, name, box, message):
    client, state = siamese
    image = _uploaded(client, tmp_path)
    r = _teach(client, name, image["id"], box)
    assert r.status_code == 400 and message in r.json()["error"]
    assert state.session.taught == {}


def test_a_taught_name_is_taken_and_a_class_can_be_forgotten(siamese, tmp_path):
    client, state = siamese
    image = _uploaded(client, tmp_path)
    assert _teach(client, "nest", image["id"], [10, 10, 60, 50])["status"] == "done"
    r = _teach(client, "nest", image["id"], [20, 20, 60, 50])
    assert r.status_code == 400 and "taken by a class taught here" in r.json()["error"]
    job = wait_job(client, client.delete("/api/classes/nest").json())
    assert job["status"] == "done" and job["result"]["state"]["taught"] == {}
    assert "nest" not in state.session.class_names
    assert client.delete("/api/classes/nest").status_code == 404


def test_classes_save_to_a_support_file_and_load_back(siamese, tmp_path):
    client, state = siamese
    image = _uploaded(client, tmp_path)
    _teach(client, "nest", image["id"], [32, 24, 64, 48])
    saved = client.post("/api/supports/save").json()
    path = saved["path"]
    data = json.load(open(path))
    assert data["format"] == "fewshot_det.supports" and data["version"] == 1
    example = data["classes"]["nest"][0]
    assert example["box"] == [32.0, 24.0, 64.0, 48.0]
    assert not os.path.isabs(example["image"]) and example["image"].startswith("supports_images/")
    # a new app on the same model loads the file back
    state2 = make_state(tmp_path / "second", checkpoint(tmp_path), supports_path=path)
    with TestClient(create_app(state2)) as client2:
        job = wait_job(client2, client2.post("/api/supports/load", json={}).json())
        assert job["status"] == "done" and job["result"]["state"]["taught"] == {"nest": 1}
    assert read_support_file(path)["nest"][0].box == (32.0, 24.0, 64.0, 48.0)


def test_saving_with_no_class_says_so(siamese):
    client, _ = siamese
    r = client.post("/api/supports/save")
    assert r.status_code == 400 and "no class taught yet" in r.json()["error"]


def _png(width, height):
    import cv2

    return cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))[1].tobytes()


@pytest.mark.parametrize("name, data, message", [
    ("notes.txt", b"these are not pixels", "notes.txt: not an image"),
    ("empty.jpg", b"", "empty.jpg: the file is empty"),
    ("anim.gif", b"GIF89a" + b"\0" * 40, "anim.gif: a GIF file"),
    ("huge.png", None, "huge.png: 20000 x 8 px is larger than this app takes"),
    ("cut.jpg", None, "cut.jpg: the file is cut short or corrupt"),
])
def test_bad_uploads_are_refused_with_a_message_and_the_app_goes_on(siamese, tmp_path, name,
                                                                      data, message):
    client, _ = siamese
    if name == "huge.png":
        data = _png(20000, 8)
    if name == "cut.jpg":
        data = open(photo(tmp_path / "whole.jpg"), "rb").read()
        data = data[:len(data) // 2]
    r = client.post("/api/images", files=[("files", (name, data, "application/octet-stream"))])
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert r.json()["rejected"][0]["name"] == name
    good = _uploaded(client, tmp_path)  # still running, and the bad file was not kept
    assert [im["name"] for im in client.get("/api/state").json()["uploads"]] == [good["name"]]


def test_a_folder_is_detected_in_a_job_only_under_the_roots(siamese, tmp_path):
    client, state = siamese
    image = _uploaded(client, tmp_path)
    _teach(client, "nest", image["id"], [32, 24, 64, 48])
    for bad in ("/etc", str(tmp_path), str(tmp_path / "photos" / "..")):
        r = client.post("/api/detect", json={"folder": bad})
        assert r.status_code == 400 and "outside the folders this app may read" in r.json()["error"]
    job = client.post("/api/detect", json={"folder": str(tmp_path / "photos")}).json()
    assert job["total"] == 3
    job = wait_job(client, job)
    assert job["status"] == "done" and job["done"] == 3
    assert [im["image"]["name"] for im in job["result"]["images"]] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    # the results file at a threshold: COCO results the evaluator reads
    results = client.get(f"/api/detect/{job['id']}/results.json?score=0.2").json()
    shown = sum(sum(s >= 0.2 for s in im["scores"]) for im in job["result"]["images"])
    assert len(results) == shown and all(r["score"] >= 0.2 for r in results)
    records = [{"image_id": f"p{i}", "height": 96, "width": 128,
                "annotations": [{"bbox": [32, 24, 64, 48], "category_id": 1}]} for i in range(3)]
    metrics = evaluate(records, {"thing_classes": ["nest"]}, results)
    assert metrics["per_class"]["nest"]["num_gt"] == 3


def test_sliced_inference_is_a_switch(tmp_path):
    state = make_state(tmp_path, checkpoint(tmp_path, "TEST.SLICE.SIZE", "160"))
    with TestClient(create_app(state)) as client:
        big = _uploaded(client, tmp_path / "big", "big.jpg")
        image = client.post("/api/images", files=[("files", ("wide.jpg", open(photo(
            tmp_path / "wide.jpg", width=400, height=300, seed=3), "rb").read(), "image/jpeg"))])
        wide = image.json()["images"][0]
        assert _teach(client, "nest", big["id"], [32, 24, 64, 48])["status"] == "done"
        outputs = {}
        for sliced in (False, True):
            job = wait_job(client, client.post("/api/detect", json={
                "images": [wide["id"]], "sliced": sliced}).json())
            assert job["status"] == "done", job
            outputs[sliced] = job["result"]["images"][0]
        assert outputs[True]["boxes"] != outputs[False]["boxes"]  # 6 tiles + the whole photo
        assert set(state.session._detectors) == {False, True}


def test_a_long_run_does_not_block_the_server_and_can_be_cancelled(tmp_path):
    folder = tmp_path / "photos"
    for i in range(4):
        photo(folder / f"p{i}.jpg", seed=i)
    fake = FakePredictor(["x"], {}, delay=0.4)
    state = make_state(tmp_path, predictor=fake, roots=[str(folder)])
    with TestClient(create_app(state)) as client:
        job = client.post("/api/detect", json={"folder": str(folder)}).json()
        time.sleep(0.1)
        t0 = time.time()
        status = client.get(f"/api/jobs/{job['id']}").json()
        assert time.time() - t0 < 0.3 and status["status"] == "running"
        client.post(f"/api/jobs/{job['id']}/cancel")
        job = wait_job(client, job)
        assert job["status"] == "cancelled" and job["done"] < 4
        assert client.get("/api/state").status_code == 200


def test_a_model_error_is_a_message_not_a_traceback(tmp_path):
    fake = FakePredictor(["x"], {}, fail=True)
    state = make_state(tmp_path, predictor=fake)
    with TestClient(create_app(state)) as client:
        image = _uploaded(client, tmp_path)
        job = wait_job(client, client.post("/api/detect", json={"images": [image["id"]]}).json())
        assert job["status"] == "failed"
        assert job["error"].startswith("internal error (RuntimeError: the model broke)")
        assert "Traceback" not in job["error"]
        assert client.get("/api/images/nope").json() == {
            "error": "no photo with id 'nope' (upload it again)"}


def test_a_linear_model_says_it_cannot_take_a_class_and_names_the_configs(tmp_path):
    state = make_state(tmp_path, checkpoint(tmp_path, kind="linear"))
    with TestClient(create_app(state)) as client:
        page = client.get("/teach").text
        assert "cannot take a new class without training" in page
        assert "configs/quickstart/fewshot_siamese_base_shapes.yaml" in page
        assert "configs/quickstart/fewshot_tfa_ft_shapes.yaml" in page
        image = _uploaded(client, tmp_path)
        r = _teach(client, "nest", image["id"], [10, 10, 50, 50])
        assert r.status_code == 400 and "cannot take a new class" in r.json()["error"]
        job = wait_job(client, client.post("/api/detect", json={"images": [image["id"]]}).json())
        assert job["status"] == "done"  # detection works as it is


def test_a_cosine_model_takes_a_new_class_by_imprinting(tmp_path):
    state = make_state(tmp_path, checkpoint(tmp_path, kind="cosine"))
    assert state.session.mode == "imprint"
    with TestClient(create_app(state)) as client:
        image = _uploaded(client, tmp_path)
        job = _teach(client, "nest", image["id"], [32, 24, 64, 48], search=image["id"])
        assert job["status"] == "done", job
        assert state.session.class_names == ["a", "b", "c", "nest"]
        model = state.session.predictor.model
        assert model.num_classes == 4
        feats = model.cosine_classifier().cls_score.weight
        assert feats.shape[0] == 5  # background + 4
        assert "nest" in job["result"]["detections"]["names"]
        job = wait_job(client, client.delete("/api/classes/nest").json())
        assert state.session.class_names == ["a", "b", "c"] and model is not \
            state.session.predictor.model


def test_review_counts_tp_fp_fn_like_the_evaluator(tmp_path):
    spec, fake, expected = review_set(tmp_path / "voc")
    state = make_state(tmp_path, predictor=fake, datasets=[spec])
    with TestClient(create_app(state)) as client:
        job = wait_job(client, client.post("/api/review", json={"dataset": 0}).json())
        assert job["status"] == "done", job
        s = client.get(f"/api/review/{job['id']}?score=0.5").json()
        got = {c["name"]: (c["tp"], c["fp"], c["fn"]) for c in s["classes"]}
        assert got == expected
        low = client.get(f"/api/review/{job['id']}?score=0.2").json()
        rbc = next(c for c in low["classes"] if c["name"] == "RBC")
        assert rbc["fp"] == expected["RBC"][1] + 1  # the 0.3 duplicate counts below 0.5
        plat = next(c for c in s["classes"] if c["name"] == "Platelets")
        assert [e["count"] for e in plat["images"]["fp"]] == [1]
        assert plat["curve"]["recall"] and len(plat["curve"]["image"]) == len(
            plat["curve"]["detection"])
        # the image of the shifted box: one FP and one FN of Platelets drawn
        img = plat["images"]["fp"][0]["image"]
        boxes = client.get(f"/api/review/{job['id']}/image/{img}?score=0.5&cls=Platelets").json()
        assert boxes["counts"]["fp"] == 1 and boxes["counts"]["fn"] == 1
        assert {b["kind"] for b in boxes["boxes"]} <= {"tp", "fp", "fn"}
        results = client.get(f"/api/review/{job['id']}/results.json").json()
        assert len(results) == sum(len(v) for v in fake.detections.values())


def test_review_needs_shared_class_names(tmp_path):
    spec, _, _ = review_set(tmp_path / "voc")
    state = make_state(tmp_path, predictor=FakePredictor(["cat"], {}), datasets=[spec])
    with TestClient(create_app(state)) as client:
        job = wait_job(client, client.post("/api/review", json={"dataset": 0}).json())
        assert job["status"] == "failed" and "share no name" in job["error"]
        assert client.post("/api/review", json={"dataset": 3}).status_code == 404
