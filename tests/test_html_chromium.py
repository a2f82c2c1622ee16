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
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
)
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium / chromedriver not installed")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
]


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
        distill_project(
            pytester,
            server,
            {"good": "correct", "half": {"spec": "even+error:7", "gpu_hourly_usd": 0.01}},
            suites={"topics": "[gate]\nmin_pass_rate = 0.5\nmax_error_rate = 0.2\n", "intents": None},
        )
        base = pytester.runpytest(
            "suites", "-p", "no:cacheprovider", "--model=good", "--model=half", "--distill-report=base"
        )
        result = pytester.runpytest(
            "suites",
            "-p",
            "no:cacheprovider",
            "--model=good",
            "--model=half",
            "--distill-report=out",
            "--distill-baseline=base/results.json",
        )
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
        return js(
            "return Array.from(document.querySelectorAll(arguments[0]))"
            ".map(e => e.getBoundingClientRect()).filter(r => r.width > 0 || r.height > 0).length",
            selector,
        )

    assert shown("svg.chart.accuracy") == 2 and shown("svg.chart.cost") == 2 and shown("svg.chart.latency") == 2
    assert shown("svg.chart.accuracy[data-suite='topics'] rect.bar") == 2
    assert shown("svg.chart.accuracy[data-suite='topics'] line.whisker") == 6  # a line and two caps each
    assert shown("svg.chart.accuracy[data-suite='topics'] line.gate") == 1
    assert shown("svg.chart.cost[data-suite='topics'] circle.point") == 2
    assert shown("svg.chart.cost circle.point.pareto") >= 2
    assert shown("svg.chart.latency[data-suite='topics'] rect.box") == 2
    # The bar lengths are the pass rates: good 100%, half 3 of 6 scored (one row errored).
    widths = js(
        "return Array.from(document.querySelectorAll(\"svg.chart.accuracy[data-suite='topics'] rect.bar\"))"
        ".map(e => e.getBoundingClientRect().width)"
    )
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
        api = (
            f'["api"]\nprovider = "openai"\nmodel = "correct"\nbase_url = "{server.url}"\n'
            'api_key_env = "FAKE_API_KEY"\nmax_retries = 0\nconstraint_style = "none"\n'
            "price_input = 1.0\nprice_output = 4.0\n"
        )
        distill_project(
            pytester,
            server,
            {"hosted": {"spec": "correct", "hourly_usd": 0.5, "hardware": "test box"}},
            extra_models=api,
        )
        bench = pytester.runpytest(
            "suites",
            "-p",
            "no:cacheprovider",
            "--model=hosted",
            "--distill-bench",
            "--distill-bench-saturate",
            "--distill-bench-max-concurrency=4",
            "--distill-bench-requests=8",
            "--distill-report=bench",
        )
        run = pytester.runpytest(
            "suites",
            "-p",
            "no:cacheprovider",
            "--model=hosted",
            "--model=api",
            "--distill-serving=bench/results.json",
            "--distill-report=out",
        )
    assert bench.ret == 0 and run.ret == 0
    js = driver.execute_script

    def shown(selector: str) -> int:
        return js(
            "return Array.from(document.querySelectorAll(arguments[0]))"
            ".map(e => e.getBoundingClientRect()).filter(r => r.width > 0 || r.height > 0).length",
            selector,
        )

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


def png_colours(png: bytes) -> set[bytes]:
    """The distinct pixel values of an 8-bit, non-interlaced RGB(A) PNG (what Chromium's
    screenshots are), decoded here so the test needs no imaging library."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, header = 8, b"", b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        chunk = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            data += chunk
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    bpp = 3 if colour_type == 2 else 4
    raw, stride, previous, colours = zlib.decompress(data), width * bpp, bytearray(width * bpp), set()
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        colours.update(bytes(line[i : i + bpp]) for i in range(0, stride, bpp))
        previous = line
    return colours


def test_matrix_and_cost_scatter_render_in_chromium(pytester, driver, monkeypatch):
    """A run of two suites x three models: the matrix table coloured by pass rate, and per
    suite the accuracy-vs-cost scatter on a log axis, Pareto front drawn, every point labelled."""
    from test_matrix import run_rehearsal

    monkeypatch.setenv("FAKE_API_KEY", "sk-fake")
    result = run_rehearsal(pytester)
    assert result.ret == 1  # misses, no gate
    driver.get((pytester.path / "out" / "report.html").as_uri())
    assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []
    js = driver.execute_script
    assert js("return performance.getEntriesByType('resource').length") == 0  # fetched nothing

    for suite in ("a", "b"):
        chart = driver.find_element("css selector", f"svg.chart.cost[data-suite='{suite}']")
        assert chart.is_displayed() and chart.size["width"] > 100 and chart.size["height"] > 100
        labels = [t.text for t in chart.find_elements("css selector", "g[data-model] text")]
        assert sorted(labels) == ["a-pricey", "distilled", "z-cheap"]  # every point labelled
        assert "(log scale)" in chart.text
        # Not blank: the chart's own pixels hold more than its background colour.
        assert len(png_colours(chart.screenshot_as_png)) > 1
    # The front drawn is the Pareto front of the run's figures (the self-hosted model's cost is
    # measured, so which points are on it depends on this machine's speed).
    import json

    from pytest_distill.report.html import pareto_front

    document = json.loads((pytester.path / "out" / "results.json").read_text())
    for suite in ("a", "b"):
        points = [
            (s["model"], s["cost"]["per_million"], s["pass_rate"]) for s in document["summaries"] if s["suite"] == suite
        ]
        drawn = js(
            "return Array.from(document.querySelectorAll(arguments[0]))"
            ".map(c => c.parentNode.getAttribute('data-model')).sort()",
            f"svg.chart.cost[data-suite='{suite}'] circle.pareto",
        )
        assert drawn == sorted(pareto_front(points)) and drawn
    table = driver.find_element("css selector", "table.matrix")
    assert table.is_displayed()
    colour = {
        (
            cell.find_element("xpath", "..").find_element("css selector", "td").text,
            cell.get_attribute("data-model"),
        ): cell.value_of_css_property("background-color")
        for cell in table.find_elements("css selector", "td.cell")
    }
    assert len(colour) == 6
    assert colour[("a", "distilled")] == colour[("b", "z-cheap")]  # both 100%
    assert colour[("a", "distilled")] != colour[("a", "z-cheap")]  # 100% vs 0%
    best = [c.get_attribute("data-model") for c in table.find_elements("css selector", "td.cell.best")]
    assert best == ["distilled", "z-cheap"]
    assert table.find_element("css selector", "tr.tally").text.split()[-3:] == ["1/0/1", "1/0/1", "0/2/0"]
    assert (
        "distilled matches or beats the best frontier model" in driver.find_element("css selector", "p.headline").text
    )
    assert driver.find_element("css selector", "table.routing").is_displayed()
