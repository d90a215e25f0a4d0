"""The A/B app in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
which ``.ci/run`` installs) drives a full two-turn comparison against ``hhhlab serve`` on tiny
models, and the stored rows are checked; a screenshot of the rating page is saved. A second test
types ``<script>`` / ``onerror=`` into the message box against a model that replies with them,
and checks that nothing ran."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from feedback_server import TWO_TINY, Server, add_rater, free_port

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[test]')")
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip("headless Chromium is not installed here: apt-get install chromium chromium-driver "
                    "(.ci/run does this)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    driver.set_page_load_timeout(240)
    yield driver
    driver.quit()


def _wait(driver, css: str, timeout: float = 240):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def _sign_in(driver, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    assert "Sign in" in driver.page_source and not driver.find_elements(By.ID, "rate-form")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()
    _wait(driver, "#new-conversation").click()
    _wait(driver, "#message")


def _send_and_wait_for_pair(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "message").send_keys(text)
    driver.find_element(By.ID, "send").click()
    _wait(driver, "#rate-form")
    # The scale is usable exactly when both replies are fully shown (checked in one script call).
    revealed, disabled = driver.execute_script(
        "return [document.getElementById('pair').dataset.revealed || null, document.getElementById('rate-1').disabled]")
    assert (revealed is None and disabled) or (revealed == "1" and not disabled)
    _wait(driver, "#pair[data-revealed='1']")


def test_two_turn_comparison_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By

    db = tmp_path / "feedback.sqlite"
    token = add_rater(db, "browser-rater")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hhhlab", "serve", "--models", TWO_TINY, "--conditions", "plain",
                             "--db", str(db), "--port", str(port), "--max-new-tokens", "16"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        srv = Server.__new__(Server)  # reuse its readiness wait on our own CLI process
        srv.proc, srv.url = proc, url
        srv.wait_ready()
        _sign_in(browser, url, token)
        _send_and_wait_for_pair(browser, "What is the capital of France?")
        a = browser.find_element(By.ID, "response-a").text
        browser.find_element(By.ID, "comment").send_keys("A reads better")
        browser.find_element(By.ID, "rate-2").click()
        _wait(browser, "#message")
        # The chosen reply (A) continues the conversation.
        transcript = browser.find_element(By.ID, "transcript").text
        assert "What is the capital of France?" in transcript and a.strip()[:10] in transcript
        _send_and_wait_for_pair(browser, "And of Germany?")
        shot = tmp_path / "rating_page.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("HHHLAB_TEST_ARTIFACTS"):
            shutil.copy(shot, Path(os.environ["HHHLAB_TEST_ARTIFACTS"]) / "feedback_rating_page.png")
        browser.find_element(By.ID, "rate-7").click()
        _wait(browser, "#message")
    finally:
        proc.terminate()
        proc.wait(20)
    rows = sqlite3.connect(db).execute(
        "SELECT rater, turn_index, rating, chosen, comment, user_message, context, system_a != system_b, "
        "rating_seconds > 0, latency_a_s > 0 FROM comparisons ORDER BY id").fetchall()
    assert [r[:6] for r in rows] == [
        ("browser-rater", 0, 2, "A", "A reads better", "What is the capital of France?"),
        ("browser-rater", 1, 7, "B", "", "And of Germany?")]
    assert "What is the capital of France?" in rows[1][6] and all(r[7] and r[8] and r[9] for r in rows)


def test_injected_markup_is_inert_in_the_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By

    db = tmp_path / "feedback.sqlite"
    evil = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    srv = Server(db, forced=f"reply {evil}")
    try:
        _sign_in(browser, srv.url, add_rater(db, "mallory"))
        _send_and_wait_for_pair(browser, f"hi {evil}")
        assert browser.execute_script("return window.pwned") is None
        for box in ("response-a", "response-b", "pending-message"):
            el = browser.find_element(By.ID, box)
            assert evil in el.get_attribute("textContent") and not el.find_elements(By.CSS_SELECTOR, "*")
        assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")
    finally:
        srv.stop()
