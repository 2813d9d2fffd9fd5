"""The HTML report in a real browser (headless Chromium from Debian's `chromium` and `chromium-driver`): every
task's section and plot is there and decoded, and prompts that carry HTML stay text."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpo_ray.config import RunConfig
from gpo_ray.core.results import StepResult
from gpo_ray.core.types import ScoredCandidate
from gpo_ray.report import read_run, render_html
from gpo_ray.runtime.run_dir import RunDirectory

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1200,2000")
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> & "quotes"'
TASKS = {"bbh/navigate": 4, "bbh/snarks": 2, "mmlu/high_school_physics": 1, f"evil/{HOSTILE}": 2}


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"{path} not found: install the Debian package `{package}` (scripts/setup.sh does)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra has it)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    """A run with finished, in-progress and hostile tasks, rendered to report.html."""
    tmp = tmp_path_factory.mktemp("report")
    config = RunConfig(tasks=list(TASKS), run_dir=tmp / "run")
    rd = RunDirectory(config.run_dir)
    rd.create(config)
    for name, steps in TASKS.items():
        prompt = HOSTILE if name.startswith("evil/") else "Let's solve the problem."
        for t in range(steps + 1):
            if t:
                prompt += f" Check step {t} carefully."
            candidates = tuple(ScoredCandidate(f"{prompt} #{j}", (t + j) / 10, 4) for j in range(4)) if t else ()
            rd.append_step(name, StepResult(t, 0 if t == 0 else 12 - t, prompt, 0.2 + 0.1 * t, candidates),
                           fingerprint=config.fingerprint())
    path = tmp / "report.html"
    path.write_text(render_html(read_run(rd.path, resolve_data=False)), encoding="utf-8")
    return path


def _wait_for_images(driver) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))


# The fraction of an image's bottom half that is drawn (opaque): a truncated PNG keeps its size but not its pixels.
DRAWN_BOTTOM_HALF = """
const img = arguments[0], c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
const h = Math.floor(c.height / 2), data = ctx.getImageData(0, h, c.width, c.height - h).data;
let opaque = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 0) opaque++;
return opaque / (data.length / 4);
"""


def test_every_task_section_and_plot_is_shown_and_decoded(browser, report_page):
    from selenium.webdriver.common.by import By

    browser.get(report_page.as_uri())
    _wait_for_images(browser)
    sections = browser.find_elements(By.CSS_SELECTOR, "section.task")
    assert len(sections) == len(TASKS)
    headings = {s.find_element(By.TAG_NAME, "h2").text for s in sections}
    assert headings == set(TASKS)
    for section in sections:
        assert section.get_attribute("id").startswith("task-")
        (img,) = section.find_elements(By.CSS_SELECTOR, "img.task-plot")
        assert img.get_property("naturalWidth") > 0 and img.get_property("naturalHeight") > 0, section.text[:80]
        assert browser.execute_script(DRAWN_BOTTOM_HALF, img) > 0.99, "the whole image decoded"
        assert img.get_attribute("alt")
        assert img.size["width"] > 0 and img.size["height"] > 0, "laid out, not hidden"
    summary_links = browser.find_elements(By.CSS_SELECTOR, "#tasks a")
    assert {a.get_attribute("href").split("#")[1] for a in summary_links} == {s.get_attribute("id") for s in sections}


def test_prompts_that_carry_html_stay_text_in_the_browser(browser, report_page):
    from selenium.webdriver.common.by import By

    browser.get(report_page.as_uri())
    _wait_for_images(browser)
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.execute_script("return document.querySelectorAll('script, iframe').length") == 0
    assert all(i.get_attribute("src").startswith("data:image/png;base64,")
               for i in browser.find_elements(By.TAG_NAME, "img"))
    evil = next(s for s in browser.find_elements(By.CSS_SELECTOR, "section.task")
                if s.find_element(By.TAG_NAME, "h2").text.startswith("evil/"))
    initial = evil.find_element(By.CSS_SELECTOR, ".prompt pre")
    assert initial.text == HOSTILE
    assert "Check step 2 carefully." in evil.find_element(By.TAG_NAME, "ins").text
