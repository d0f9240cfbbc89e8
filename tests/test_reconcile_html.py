"""The reconcile HTML page: self-contained, escaped, and working in a real browser."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tfenv.reconcile.html import format_age, format_duration, render_html
from tfenv.reconcile.report import AREAS, HostResult, Item, Report

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def three_hosts() -> Report:
    """One clean host, one drifted container field, one host not reached."""
    return Report(
        inventory="inventories/prod.py",
        started="2025-03-10T02:00:00Z",
        finished="2025-03-10T02:01:23Z",
        duration_s=83.4,
        hosts={
            "gpu-01.test": HostResult(name="gpu-01.test", checked=True),
            "gpu-02.test": HostResult(
                name="gpu-02.test",
                checked=True,
                items=[
                    Item(
                        area="containers",
                        field="dev.env",
                        declared="TF_CPP_MIN_LOG_LEVEL=2",
                        observed="TF_CPP_MIN_LOG_LEVEL=0",
                        first_seen="2025-03-06T22:00:00Z",
                    )
                ],
            ),
            "gpu-03.test": HostResult(name="gpu-03.test", checked=False, error="could not connect"),
        },
    )


def test_page_is_self_contained() -> None:
    page = render_html(three_hosts())
    assert page.startswith("<!DOCTYPE html>")
    assert page.endswith("</html>\n")
    for external in ("http://", "https://", "src=", "@import", "url(", "//cdn", "fetch("):
        assert external not in page


def test_page_shows_run_totals_and_exit_code() -> None:
    page = render_html(three_hosts())
    assert "<title>tfenv reconcile: inventories/prod.py</title>" in page
    assert "2025-03-10T02:00:00Z" in page
    assert "2025-03-10T02:01:23Z" in page
    assert "1 min 23 s" in page
    assert "Exit code 1: some host was not checked" in page
    totals = dict(re.findall(r'<li id="total-(\w+)"><span class="n">(\d+)</span>', page))
    assert totals == {
        "hosts": "3",
        "checked": "2",
        "clean": "1",
        "drift": "1",
        "needs_a_person": "0",
        "unreachable": "1",
        "rollout_in_progress": "0",
        "items": "1",
    }


def test_grid_has_a_cell_per_host_and_area() -> None:
    page = render_html(three_hosts())
    cells = re.findall(
        r'<td class="cell cell-([a-z-]+)" data-host="([^"]+)" data-area="([^"]+)" '
        r'data-status="([a-z-]+)"',
        page,
    )
    assert len(cells) == 3 * len(AREAS)
    by_key = {(host, area): (cls, status) for cls, host, area, status in cells}
    assert all(cls == status for cls, status in by_key.values())
    assert by_key["gpu-02.test", "containers"][1] == "drift"
    assert by_key["gpu-02.test", "clock"][1] == "clean"
    assert {by_key["gpu-01.test", a][1] for a in AREAS} == {"clean"}
    assert {by_key["gpu-03.test", a][1] for a in AREAS} == {"unreachable"}


def test_drill_down_rows_and_error() -> None:
    page = render_html(three_hosts())
    drifted = _details(page, "gpu-02.test")
    assert "dev.env" in drifted
    assert "TF_CPP_MIN_LOG_LEVEL=2" in drifted
    assert "TF_CPP_MIN_LOG_LEVEL=0" in drifted
    assert "3 d 4 h" in drifted  # first seen 2025-03-06T22:00, report finished 03-10T02:01
    assert "could not connect" in _details(page, "gpu-03.test")
    assert "No drift." in _details(page, "gpu-01.test")


def test_person_item_shows_its_command_and_history_start() -> None:
    report = three_hosts()
    report.hosts["gpu-01.test"].items.append(
        Item(
            area="driver",
            field="nvidia-driver.reboot",
            declared="loaded 550.127.05",
            observed="loaded 535.183.01",
            action="person",
            command="sudo reboot",
            first_seen="2025-03-01T02:00:00Z",
        )
    )
    page = render_html(report, history_since={"gpu-01.test": "2025-03-01T02:00:00Z"})
    host = _details(page, "gpu-01.test")
    assert "needs a person" in host
    assert "<code>sudo reboot</code>" in host
    assert "Drift history since 2025-03-01T02:00:00Z." in host
    assert "at least 9 d 0 h" in host
    assert 'data-host="gpu-01.test" data-area="driver" data-status="needs-a-person"' in page
    assert "Exit code 1" in page


def test_every_string_is_escaped() -> None:
    report = three_hosts()
    evil = '<script>alert("x")</script>'
    report.inventory = f"inv{evil}"
    report.hosts["gpu-02.test"].items.append(
        Item(area="containers", field=f"dev.{evil}", declared=evil, observed="a & b")
    )
    report.hosts["gpu-03.test"].error = f"ssh: {evil}"
    page = render_html(report)
    assert evil not in page
    assert page.count("<script>") == 1  # the page's own
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "a &amp; b" in page


def test_age_and_duration_formats() -> None:
    assert format_age("2025-03-06T22:00:00Z", "2025-03-10T02:01:23Z") == "3 d 4 h"
    assert format_age("2025-03-10T00:00:00Z", "2025-03-10T05:12:59Z") == "5 h 12 min"
    assert format_age("2025-03-10T00:00:00Z", "2025-03-10T00:07:00Z") == "7 min"
    assert format_age("2025-03-10T00:00:00Z", "2025-03-10T00:00:30Z") == "< 1 min"
    assert format_age("2025-03-10T00:00:00Z", "2025-03-09T00:00:00Z") == "< 1 min"
    assert format_age("yesterday", "2025-03-10T00:00:00Z") == "yesterday"
    assert format_duration(4.25) == "4.2 s"
    assert format_duration(83.4) == "1 min 23 s"
    assert format_duration(3720) == "1 h 2 min"


def _details(page: str, host: str) -> str:
    match = re.search(rf'<details class="host" id="host-{re.escape(host)}".*?</details>', page)
    assert match, host
    return match.group(0)


# --- In a real browser ------------------------------------------------------------------


@pytest.fixture
def browser():
    """Headless Chromium through its WebDriver (Debian: chromium, chromium-driver)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            f"needs {CHROMIUM} and {CHROMEDRIVER}: install chromium and chromium-driver "
            "(tools/system-packages does)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="needs selenium: pip install -e '.[dev]'"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    )
    try:
        yield driver
    finally:
        driver.quit()


def test_clicking_a_cell_opens_the_host(browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = tmp_path / "reconcile.html"
    page.write_text(render_html(three_hosts()), encoding="utf-8")
    browser.get(page.as_uri())
    assert browser.title == "tfenv reconcile: inventories/prod.py"

    cell = browser.find_element(
        By.CSS_SELECTOR, 'td.cell[data-host="gpu-02.test"][data-area="containers"]'
    )
    assert "cell-drift" in cell.get_attribute("class").split()
    assert cell.get_attribute("data-status") == "drift"
    assert cell.text.startswith("~")
    assert cell.value_of_css_property("background-color") != browser.find_element(
        By.CSS_SELECTOR, 'td.cell[data-host="gpu-01.test"][data-area="containers"]'
    ).value_of_css_property("background-color")

    details = browser.find_element(By.ID, "host-gpu-02.test")
    row = details.find_element(By.CSS_SELECTOR, 'tr.item[data-field="dev.env"]')
    assert details.get_attribute("open") is None
    assert not row.is_displayed()

    cell.click()
    WebDriverWait(browser, 5).until(lambda _: row.is_displayed())
    assert details.get_attribute("open") is not None
    assert "dev.env" in row.text
    assert "focus" in row.get_attribute("class").split()
    assert browser.find_element(By.ID, "host-gpu-01.test").get_attribute("open") is None

    shot = tmp_path / "reconcile.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000
    artifacts = os.environ.get("TFENV_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "reconcile-html.png")
        shutil.copy(page, Path(artifacts) / "reconcile.html")
