"""The report of a tiny run in a real browser (headless Chromium via Selenium): every figure
and table rendered, the sorting script ran, and the page requested nothing from the network.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and selenium
(the ``test`` extra). Skipped, saying why, only where they cannot be found. The screenshot is
kept under ``$HHHLAB_ARTIFACTS`` when that is set (CI uploads it), else in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


def _driver(tmp_path: Path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    if not CHROMIUM or not DRIVER:
        pytest.skip("headless Chromium not found: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,2400", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from report_run import make_tiny_run

    from hhhlab.report.collect import collect
    from hhhlab.report.html import build_report

    root = tmp_path_factory.mktemp("browser")
    _, work, _, _ = make_tiny_run(root)
    path, _ = build_report(collect([str(work)]), root / "report.html")
    return path


def test_report_renders_in_chromium_without_network(report, tmp_path):
    from selenium.webdriver.common.by import By

    driver = _driver(tmp_path)
    try:
        driver.get("about:blank")
        driver.get_log("performance")  # drain what the browser loaded for itself (its new-tab page)
        driver.get(report.as_uri())
        assert driver.execute_script("return document.documentElement.getAttribute('data-ready')") == "1"
        figures = driver.find_elements(By.CSS_SELECTOR, "figure.fig")
        assert len(figures) >= 5
        for fig in figures:  # every figure drew as many points as its data holds, at a visible size
            svg = fig.find_element(By.CSS_SELECTOR, "svg.chart")
            n = int(svg.get_attribute("data-points"))
            assert n > 0 and len(svg.find_elements(By.CSS_SELECTOR, "circle.pt")) == n
            assert svg.size["width"] > 200 and svg.size["height"] > 150
        tables = driver.find_elements(By.CSS_SELECTOR, "table.sortable")
        assert tables and all(len(t.find_elements(By.CSS_SELECTOR, "tbody tr")) == int(t.get_attribute("data-rows"))
                              for t in tables if t.get_attribute("data-rows"))
        # sorting works: click the value column of the eval results twice, values come out ordered
        t = driver.find_element(By.CSS_SELECTOR, 'table[data-table="eval-results"]')
        th = t.find_elements(By.CSS_SELECTOR, "thead th")[5]
        th.click()
        keys = [float(c.get_attribute("data-sort")) for c in t.find_elements(By.CSS_SELECTOR, "tbody tr td:nth-child(6)")]
        assert keys == sorted(keys)
        th.click()
        keys = [float(c.get_attribute("data-sort")) for c in t.find_elements(By.CSS_SELECTOR, "tbody tr td:nth-child(6)")]
        assert keys == sorted(keys, reverse=True)
        # a hover value: every point has its estimate and interval as a tooltip
        tip = driver.find_element(By.CSS_SELECTOR, "circle.pt title").get_attribute("textContent")
        assert "[" in tip and "]" in tip
        statuses = {s.get_attribute("id"): s.get_attribute("data-status")
                    for s in driver.find_elements(By.CSS_SELECTOR, "section[data-status]")}
        assert statuses["evals"] == statuses["pm_vs_il"] == "ok"
        shots = Path(os.environ.get("HHHLAB_ARTIFACTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        png = shots / "report_screenshot.png"
        driver.set_window_size(1280, int(driver.execute_script("return document.body.scrollHeight")) + 40)
        assert driver.save_screenshot(str(png)) and png.stat().st_size > 20_000
        # nothing but the file itself (and inline data: URIs) was requested, nothing was refused
        requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
        urls = [m["params"]["request"]["url"] for m in requests if m.get("method") == "Network.requestWillBeSent"]
        assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
        console = [e["message"] for e in driver.get_log("browser")]
        assert not [m for m in console if "Refused" in m or "Content Security Policy" in m], console
    finally:
        driver.quit()
