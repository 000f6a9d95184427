"""The page at / in a real browser (headless Chromium): analyse, enrol, search, and no XSS.

Needs Debian's `chromium` and `chromium-driver` (and selenium from PyPI); it is
skipped, saying so, where they are missing. Screenshots go to
`$SWINFACE_SCREENSHOTS` when set, else to the test's temporary folder; the
path is printed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
selenium = pytest.importorskip("selenium", reason="needs selenium (pip install selenium)")
from serve_process import KEY, nano_weights, running_server  # noqa: E402

from swinface.assets import SAMPLE_PHOTO  # noqa: E402

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs headless Chromium: apt-get install chromium chromium-driver",
)
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1400"):
        options.add_argument(arg)
    options.add_argument("--disable-dev-shm-usage")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("SWINFACE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


def _text_is(driver, selector: str, text: str, timeout: float = 60) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def seen(d):
        return any(e.text == text for e in d.find_elements(By.CSS_SELECTOR, selector))

    WebDriverWait(driver, timeout).until(seen, f"{selector} never showed {text!r}")


def _fill(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, element_id)
    box.clear()
    box.send_keys(value)


def test_page_analyses_enrols_and_searches(browser, tmp_path, screenshots):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    weights = nano_weights(tmp_path / "nano.safetensors")
    photo = str(SAMPLE_PHOTO)
    with running_server(weights, tmp_path / "data") as url:
        browser.get(url + "/")
        assert browser.title == "swinface"

        # Analyse: one card with an age and an expression.
        browser.find_element(By.ID, "photo-input").send_keys(photo)
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".face-card"))
        cards = browser.find_elements(By.CSS_SELECTOR, ".face-card")
        assert len(cards) == 1
        age = cards[0].find_element(By.CSS_SELECTOR, ".age").text
        assert re.fullmatch(r"Age -?\d+", age), age  # random test weights: any number
        expression = cards[0].find_element(By.CSS_SELECTOR, ".expression").text
        assert expression.startswith("Expression: ") and len(expression) > 12
        assert len(cards[0].find_elements(By.CSS_SELECTOR, ".bar")) == 7
        canvas_width = browser.execute_script("return document.getElementById('canvas').width")
        assert canvas_width == 512
        browser.save_screenshot(str(screenshots / "1-analyse.png"))

        # Without the key, a write is refused in plain words.
        _fill(browser, "gallery-name", "web")
        browser.find_element(By.ID, "create-gallery").click()
        _text_is(browser, "#message", "This needs the API key (type it in at the top).")

        # Enrol the face, then search with the same photo and see the name.
        _fill(browser, "api-key", KEY)
        browser.find_element(By.ID, "create-gallery").click()
        _text_is(browser, "#message", "Gallery web created.")
        _fill(browser, "enrol-id", "eileen")
        _fill(browser, "enrol-name", "Eileen Collins")
        browser.find_element(By.ID, "enrol-photo").send_keys(photo)
        browser.find_element(By.ID, "enrol-btn").click()
        _text_is(browser, "#subjects .subject-name", "Eileen Collins")
        browser.find_element(By.ID, "search-photo").send_keys(photo)
        browser.find_element(By.ID, "search-btn").click()
        _text_is(browser, "#search-results .match-name", "Eileen Collins")
        browser.save_screenshot(str(screenshots / "2-search.png"))

        # A name that is HTML shows as text and runs nothing.
        _fill(browser, "gallery-name", "xss")
        browser.find_element(By.ID, "create-gallery").click()
        _text_is(browser, "#message", "Gallery xss created.")
        _fill(browser, "enrol-id", "x1")
        _fill(browser, "enrol-name", XSS)
        browser.find_element(By.ID, "enrol-btn").click()
        _text_is(browser, "#subjects .subject-name", XSS)
        browser.find_element(By.ID, "search-btn").click()
        _text_is(browser, "#search-results .match-name", XSS)
        assert browser.find_elements(By.CSS_SELECTOR, "#subjects img, #search-results img") == []
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        browser.save_screenshot(str(screenshots / "3-xss-as-text.png"))
    assert all(
        (screenshots / n).stat().st_size > 10_000 for n in ("1-analyse.png", "3-xss-as-text.png")
    )
