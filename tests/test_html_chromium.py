"""report.html in headless Chromium: renders with no console errors, fetches nothing, shows the charts.

Needs chromium + chromedriver (Debian: apt-get install chromium chromium-driver) and
selenium; skipped when any is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers.chat_server import FakeChatServer, distill_project, numbered_rows

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium / chromedriver not installed")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1600"]


@pytest.fixture
def driver(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(60)
    yield browser
    browser.quit()


def test_report_renders_in_chromium(pytester, driver):
    with FakeChatServer(numbered_rows(8)) as server:
        distill_project(pytester, server,
                        {"good": "correct", "half": {"spec": "even+error:7", "gpu_hourly_usd": 0.01}},
                        suites={"topics": "[gate]\nmin_pass_rate = 0.5\nmax_error_rate = 0.2\n", "intents": None})
        base = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=good", "--model=half",
                                  "--distill-report=base")
        result = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=good", "--model=half",
                                    "--distill-report=out", "--distill-baseline=base/results.json")
    assert base.ret == 1 and result.ret == 1  # the ungated suite's misses fail the run
    page = pytester.path / "out" / "report.html"

    driver.get(page.as_uri())
    problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []
    js = driver.execute_script
    assert js("return document.documentElement.getAttribute('data-ready')") == "1"  # the script ran
    assert js("return performance.getEntriesByType('resource').length") == 0  # fetched nothing

    def shown(selector: str) -> list:
        # Rendered, not just present: laid out with a real extent (a line has one dimension).
        return js("return Array.from(document.querySelectorAll(arguments[0]))"
                  ".map(e => e.getBoundingClientRect()).filter(r => r.width > 0 || r.height > 0).length", selector)

    assert shown("svg.chart.accuracy") == 2 and shown("svg.chart.cost") == 2 and shown("svg.chart.latency") == 2
    assert shown("svg.chart.accuracy[data-suite='topics'] rect.bar") == 2
    assert shown("svg.chart.accuracy[data-suite='topics'] line.whisker") == 6  # a line and two caps each
    assert shown("svg.chart.accuracy[data-suite='topics'] line.gate") == 1
    assert shown("svg.chart.cost[data-suite='topics'] circle.point") == 2
    assert shown("svg.chart.cost circle.point.pareto") >= 2
    assert shown("svg.chart.latency[data-suite='topics'] rect.box") == 2
    # The bar lengths are the pass rates: good 100%, half 3 of 6 scored (one row errored).
    widths = js("return Array.from(document.querySelectorAll(\"svg.chart.accuracy[data-suite='topics'] rect.bar\"))"
                ".map(e => e.getBoundingClientRect().width)")
    assert widths[1] == pytest.approx(widths[0] * 4 / 7, rel=0.01)

    rows = "#misses tbody tr"
    assert js(f"return document.querySelectorAll('{rows}').length") == 6  # half's misses in both suites
    assert js("return document.querySelectorAll('#errors tbody tr').length") == 2
    box = driver.find_element("css selector", "input[data-filter='misses']")
    box.send_keys("intents")
    assert js(f"return Array.from(document.querySelectorAll('{rows}')).filter(r => !r.hidden).length") == 3
    assert driver.find_element("id", "misses-count").text == "3 of 6"
    assert "route to" in driver.find_element("css selector", "#suite-topics .route").text
    assert driver.find_elements("css selector", "table.baseline tbody tr")
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_serving_curves_and_break_even_chart_render_in_chromium(pytester, driver, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "sk-test")
    with FakeChatServer(numbered_rows(8)) as server:
        api = (f'["api"]\nprovider = "openai"\nmodel = "correct"\nbase_url = "{server.url}"\n'
               'api_key_env = "FAKE_API_KEY"\nmax_retries = 0\nconstraint_style = "none"\n'
               "price_input = 1.0\nprice_output = 4.0\n")
        distill_project(pytester, server, {"hosted": {"spec": "correct", "hourly_usd": 0.5, "hardware": "test box"}},
                        extra_models=api)
        bench = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=hosted", "--distill-bench",
                                   "--distill-bench-saturate", "--distill-bench-max-concurrency=4",
                                   "--distill-bench-requests=8", "--distill-report=bench")
        run = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=hosted", "--model=api",
                                 "--distill-serving=bench/results.json", "--distill-report=out")
    assert bench.ret == 0 and run.ret == 0
    js = driver.execute_script

    def shown(selector: str) -> int:
        return js("return Array.from(document.querySelectorAll(arguments[0]))"
                  ".map(e => e.getBoundingClientRect()).filter(r => r.width > 0 || r.height > 0).length", selector)

    for report in ("bench", "out"):
        driver.get((pytester.path / report / "report.html").as_uri())
        problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert problems == []
        assert js("return performance.getEntriesByType('resource').length") == 0
        assert shown("table.serving tbody tr") == 1
        assert shown("svg.chart.serving.throughput polyline.curve") == 1
        assert shown("svg.chart.serving.latency polyline.curve") == 1
        assert shown("svg.chart.serving.throughput circle.step") >= 2  # c=1, c=2, ...
        assert shown("svg.chart.serving.throughput circle.knee") == 1
    # the evaluation priced from the stored figures: cost at volume, one line per model, a break-even dot
    assert shown("table.volume tbody tr") == 2
    assert shown("svg.chart.volume polyline.cost-line") == 2
    assert shown("svg.chart.volume circle.break-even") <= 1
    assert "cheaper than" in driver.find_element("css selector", "section.volume").text
