"""The web app in a real headless Chromium (Selenium, the system's chromium and chromedriver).

Skipped when chromium, chromedriver or selenium is missing, and (teach) when
../shared/data/aquarium is absent. With FEWSHOT_APP_SCREENSHOTS=1 the tests also save
docs/app_teach.png and docs/app_review.png.
"""
import glob
import json
import os
import shutil
import socket
import threading
import time
import urllib.request

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from app_fixtures import REPO, SHARED, make_state, review_set  # noqa: E402
from fewshot_det.app import create_app  # noqa: E402
from fewshot_det.evaluation import evaluate  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = os.environ.get("FEWSHOT_APP_SCREENSHOTS", "") not in ("", "0")
QUICKSTART = os.path.join(REPO, "configs", "quickstart", "fewshot_siamese_base_shapes.yaml")
AQUARIUM = os.path.realpath(os.path.join(SHARED, "aquarium", "test"))

pytestmark = pytest.mark.skipif(not CHROMIUM or not os.path.isfile(DRIVER),
                                reason="chromium / chromedriver not installed "
                                       "(apt-get install chromium chromium-driver)")


class Server:
    """uvicorn serving ``app`` on a free local port, in a thread."""

    def __init__(self, app):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        end = time.time() + 15
        while not self.server.started:
            assert time.time() < end and self.thread.is_alive(), "the app did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)

    def get_json(self, path):
        with urllib.request.urlopen(self.url + path) as r:
            return json.load(r)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    downloads = str(tmp_path_factory.mktemp("downloads"))
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1440,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.downloads = downloads
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=40, what="the page"):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        message = driver.find_element(By.ID, "message-text").text
        raise AssertionError(f"timed out waiting for {what}; message bar: {message!r}; status: "
                             f"{_text(driver, 'status')!r}") from None


def _text(driver, element_id):
    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else ""


def _set_slider(driver, value):
    driver.execute_script("const s = document.getElementById('score'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('input'));", str(value))


def _screenshot(driver, name, height):
    if SCREENSHOTS:
        driver.set_window_size(1440, height)
        time.sleep(0.3)
        driver.save_screenshot(os.path.join(REPO, "docs", name))


# ------------------------------------------------------------------------------- teach
def _landscape_photos():
    """The 1024 x 768 aquarium photos with fish."""
    from PIL import Image

    photos = [p for p in sorted(glob.glob(os.path.join(AQUARIUM, "images", "*.jpg")))
              if Image.open(p).size == (1024, 768) and _fish_boxes(p)]
    if len(photos) < 2:
        pytest.skip("no two 1024 x 768 aquarium photos with fish")
    return photos


def _fish_boxes(photo):
    """The photo's fish boxes in pixels (class names: aquarium's data.yaml)."""
    import yaml

    names = yaml.safe_load(open(os.path.join(AQUARIUM, "..", "data.yaml")))["names"]
    label = os.path.splitext(photo.replace(os.sep + "images" + os.sep,
                                           os.sep + "labels" + os.sep))[0] + ".txt"
    boxes = []
    for line in open(label).read().split("\n"):
        if line.strip():
            c, cx, cy, w, h = (float(v) for v in line.split())
            if names[int(c)] == "fish":
                boxes.append([(cx - w / 2) * 1024, (cy - h / 2) * 768, (cx + w / 2) * 1024,
                              (cy + h / 2) * 768])
    return boxes


def _draw(browser, box, width=1024):
    """Drag the mouse over ``box`` (photo pixels) on the teach page's canvas."""
    canvas = browser.find_element(By.ID, "canvas")
    rect = canvas.rect
    x1, y1, x2, y2 = (v * rect["width"] / width for v in box)
    dx, dy = int(x2 - x1), int(y2 - y1)
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(x1 - rect["width"] / 2), int(y1 - rect["height"] / 2)).click_and_hold() \
        .move_by_offset(dx // 2, dy // 2).move_by_offset(dx - dx // 2, dy - dy // 2) \
        .release().perform()


def _largest(boxes):
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


@pytest.fixture(scope="module")
def quickstart_app(tmp_path_factory):
    """The quick-start siamese model with random weights, served."""
    import torch

    from fewshot_det.config import load_cfg
    from fewshot_det.modeling import build_model

    if not os.path.isdir(AQUARIUM):
        pytest.skip(f"{AQUARIUM} not found")
    tmp = tmp_path_factory.mktemp("quickstart")
    # COSINE_SCALE 1: random prototypes give every box a score of 1.0 at the trained 20;
    # a low scale spreads them so that the slider has something to filter
    opts = ["MODEL.DEVICE", "cpu", "MODEL.ROI_BOX_HEAD.COSINE_SCALE", "1.0"]
    cfg = load_cfg(QUICKSTART, opts + ["MODEL.ROI_HEADS.NUM_CLASSES", "9", "MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    weights = str(tmp / "siamese_random.pth")
    torch.save({"model": build_model(cfg).state_dict(),
                "extra": {"thing_classes": [f"shape{i}" for i in range(9)]}}, weights)
    state = make_state(tmp, load_cfg(QUICKSTART, opts + ["MODEL.WEIGHTS", weights]),
                       datasets=[f"yolo:{os.path.dirname(AQUARIUM)}:test"])
    with Server(create_app(state)) as server:
        yield server


def test_teach_a_class_with_the_mouse_then_filter_and_download(browser, quickstart_app):
    photo, other = _landscape_photos()[:2]
    browser.set_window_size(1440, 1000)
    browser.get(quickstart_app.url + "/teach")
    browser.find_element(By.ID, "upload").send_keys(photo)
    _wait(browser, lambda d: "Draw a box" in _text(d, "status"), what="the photo")
    _draw(browser, _largest(_fish_boxes(photo)))
    assert _text(browser, "box-info").startswith("Box on")
    browser.find_element(By.ID, "class-name").send_keys("fish")
    t0 = time.time()
    browser.find_element(By.ID, "add-class").click()
    _wait(browser, lambda d: _text(d, "status").startswith("taught 'fish'"), what="detections")
    print(f"drawn box -> detections on a 1024 x 768 photo: {time.time() - t0:.2f} s (page: "
          f"{_text(browser, 'status')})")
    assert int(browser.find_element(By.ID, "status").get_attribute("data-shown")) > 0
    assert "fish" in _text(browser, "taught")
    # another photo, from the --data split: the taught class is searched there
    browser.find_element(By.ID, "show-dataset").click()
    thumb = (By.CSS_SELECTOR, f"#photos li[title='{os.path.basename(other)}']")
    _wait(browser, lambda d: d.find_elements(*thumb), what="the dataset's photos")
    browser.find_element(*thumb).click()
    _wait(browser, lambda d: _text(d, "status").startswith("detected in"), what="detections")
    assert int(browser.find_element(By.ID, "status").get_attribute("data-shown")) > 0
    # the slider filters on the page: a threshold that keeps the best boxes only
    href = browser.find_element(By.ID, "download").get_attribute("href")
    everything = quickstart_app.get_json(href.split(str(quickstart_app.port), 1)[1]
                                         .split("?")[0] + "?score=0")
    scores = sorted((r["score"] for r in everything), reverse=True)
    threshold = int(scores[min(4, len(scores) - 1)] * 100) / 100
    _set_slider(browser, threshold)
    expected = sum(s >= threshold for s in scores)
    _wait(browser, lambda d: d.find_element(By.ID, "status").get_attribute("data-shown")
          == str(expected), what="the slider's filtering")
    # the results json (what the page shows) downloads and the evaluator reads it
    browser.find_element(By.ID, "download").click()
    _wait(browser, lambda d: glob.glob(os.path.join(d.downloads, "*.json")), 20, "the download")
    results = json.load(open(glob.glob(os.path.join(browser.downloads, "*.json"))[0]))
    assert len(results) == expected and all(r["score"] >= threshold for r in results)
    assert {r["category_name"] for r in results} == {"fish"}
    stem = os.path.splitext(os.path.basename(other))[0]  # the split's image id
    assert {r["image_id"] for r in results} == {stem}
    record = {"image_id": stem, "height": 768, "width": 1024,
              "annotations": [{"bbox": b, "category_id": 1} for b in _fish_boxes(other)]}
    metrics = evaluate([record], {"thing_classes": ["fish"]}, results, score_thresh=threshold)
    assert metrics["per_class"]["fish"]["num_gt"] == len(_fish_boxes(other))
    assert metrics["per_class"]["fish"]["tp"] + metrics["per_class"]["fish"]["fp"] == expected
    # a box on this photo can be another example of the class
    _draw(browser, _largest(_fish_boxes(other)))
    assert browser.find_element(By.ID, "add-example").is_enabled()
    _screenshot(browser, "app_teach.png", 1000)


def test_a_bad_upload_shows_its_message_on_the_page(browser, quickstart_app, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    before = quickstart_app.get_json("/api/state")["uploads"]
    browser.get(quickstart_app.url + "/detect")
    browser.find_element(By.ID, "upload").send_keys(str(bad))
    _wait(browser, lambda d: d.find_element(By.ID, "message").is_displayed(), what="the message")
    assert "notes.txt: not an image" in _text(browser, "message-text")
    assert quickstart_app.get_json("/api/state")["uploads"] == before  # not kept


# ------------------------------------------------------------------------------ review
def test_review_shows_the_errors_of_a_tiny_set(browser, tmp_path):
    spec, fake, expected = review_set(tmp_path / "voc")
    state = make_state(tmp_path, predictor=fake, datasets=[spec])
    with Server(create_app(state)) as server:
        browser.set_window_size(1440, 1000)
        browser.get(server.url + "/review")
        browser.find_element(By.ID, "run").click()
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#metrics tbody tr")) == 3,
              what="the metrics table")
        got = {}
        for row in browser.find_elements(By.CSS_SELECTOR, "#metrics tbody tr"):
            cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
            got[cells[0]] = (int(cells[2]), int(cells[3]), int(cells[4]))
        assert got == expected
        # a click on a number opens those images, boxes drawn by outcome
        browser.find_element(By.CSS_SELECTOR,
                             "tr[data-cls='Platelets'] button[data-kind='fp']").click()
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery .card[data-fp]"),
              what="the gallery")
        card = browser.find_element(By.CSS_SELECTOR, "#gallery .card[data-fp]")
        assert (card.get_attribute("data-fp"), card.get_attribute("data-fn")) == ("1", "1")
        # a click on a curve point opens its detection
        review_id = browser.execute_script("return rev.job;")
        summary = server.get_json(f"/api/review/{review_id}?score=0.5")
        rbc = next(c for c in summary["classes"] if c["name"] == "RBC")["curve"]
        browser.execute_script("const s = document.getElementById('curve-class');"
                               "s.value = 'RBC'; s.dispatchEvent(new Event('change'));")
        pr = browser.find_element(By.ID, "pr")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", pr)
        i = len(rbc["recall"]) // 2
        x = 40 + rbc["recall"][i] * (420 - 80)
        y = 360 - 40 - rbc["precision"][i] * (360 - 80)
        scale = pr.rect["width"] / 420
        ActionChains(browser).move_to_element_with_offset(
            pr, int(x * scale - pr.rect["width"] / 2), int(y * scale - pr.rect["height"] / 2)) \
            .click().perform()
        _wait(browser, lambda d: "curve point" in _text(d, "gallery-title"), 10, "the point")
        browser.find_element(By.ID, "hardest-all").click()
        _wait(browser, lambda d: _text(d, "gallery-title").startswith("all classes: hardest")
              and len(d.find_elements(By.CSS_SELECTOR, "#gallery .card[data-fn]")) == 3,
              what="the hardest images")
        cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .card")
        assert sorted((int(c.get_attribute("data-fp")), int(c.get_attribute("data-fn")))
                      for c in cards) == [(0, 1), (1, 0), (1, 1)]
        browser.execute_script("window.scrollTo(0, 0);")
        _screenshot(browser, "app_review.png", 1500)
