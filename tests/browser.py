"""Headless Chromium for the page tests (Debian's ``chromium`` and ``chromium-driver``, driven
by Selenium): :func:`chromium_paths` finds or installs them, :func:`open_page` loads a file and
:func:`check_page` returns what a reader would meet (console errors, broken or unlabelled
images, table rows, page width) and writes a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def _find() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/lib/chromium/chromedriver",) if Path(p).exists()),
                                                  None)
    return (browser, driver) if browser and driver else None


def chromium_paths() -> tuple[tuple[str, str] | None, str]:
    """(browser, driver) paths, installing Debian's packages with apt-get where they are missing
    and we may (root, or sudo without a password); else None and the reason."""
    found = _find()
    if found:
        return found, ""
    from filelock import FileLock

    with FileLock(str(Path(tempfile.gettempdir()) / "modernize-chromium-install.lock")):  # one install at a time
        found = _find()  # another test process may have installed it meanwhile
        return (found, "") if found else _apt_install()


def _apt_install() -> tuple[tuple[str, str] | None, str]:
    if not shutil.which("apt-get"):
        return None, "chromium is not installed and there is no apt-get to install it"
    sudo: list[str] = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else [])
    if os.geteuid() != 0 and not sudo:
        return None, "chromium is not installed and installing it needs root (no sudo)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = [*sudo, "apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", "chromium", "chromium-driver"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    found = _find()
    reason = "" if found else f"apt-get could not install chromium: {(done.stderr or done.stdout).strip()[-300:]}"
    return found, reason


@dataclass
class PageCheck:
    console_errors: list[str]
    broken_images: list[str]
    images_without_alt: list[str]
    images: int
    table_rows: int
    scroll_width: int
    screenshot: Path
    sticky: dict[str, tuple[float, float, float, float, str]]
    """Per table selector, after scrolling its box fully sideways: (box scrollLeft, the first step
    cell's left and right, the viewport width, its text)."""
    figure_text_px: list[tuple[str, float]]
    """Per report figure (not the block diagrams): its smallest text in CSS px as displayed."""
    cells: list[list[str]]
    """The text of every cell of ``table_selector``'s rows (the folded table included)."""
    scrolled_screenshot: Path | None = None
    result_bottom: float = -1.0
    """The bottom of the page's main result (``.result``) before any scrolling (-1: none)."""


def open_browser(paths: tuple[str, str], width: int, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-profile-')}")
    opts.add_argument(f"--window-size={width},{height}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=paths[1]))


JS_IMAGES = """return Array.from(document.images).map(i => [
  i.currentSrc.startsWith('data:') ? i.currentSrc.slice(0, 40) : i.currentSrc, i.complete && i.naturalWidth > 0,
  (i.getAttribute('alt') || '').trim().length > 0]);"""


JS_STICKY = """const t = document.querySelector(arguments[0]); if (!t) return null;
const d = t.closest('details'); if (d) d.open = true;
const box = t.closest('.box'); box.scrollIntoView(); box.scrollLeft = box.scrollWidth;
const cell = t.querySelector('tbody th[scope=row]'); const r = cell.getBoundingClientRect();
return [box.scrollLeft, r.left, r.right, window.innerWidth, cell.textContent];"""

JS_FIGURES = """return Array.from(document.querySelectorAll('figure .box img')).map(i => [
  i.getAttribute('alt').slice(0, 40), i.getBoundingClientRect().width, i.naturalWidth,
  i.currentSrc.startsWith('data:image/svg') ? 'svg' : 'png', parseFloat(i.dataset.minFontPt || '0')]);"""


def figure_text_px(shown: float, natural: float, kind: str, font_pt: float, dpi: float) -> float:
    """CSS px of ``font_pt`` text in a figure drawn ``natural`` px wide and shown ``shown`` px wide
    (an SVG's natural px are CSS px, 4/3 per point; a PNG's are ``dpi``/72 per point)."""
    per_pt = 4.0 / 3.0 if kind == "svg" else dpi / 72.0
    return font_pt * per_pt * shown / natural if natural else 0.0


def check_page(paths: tuple[str, str], page: Path, screenshot: Path, *, width: int = 390, height: int = 844,
               table_selector: str = "#ablation tbody", sticky: tuple[str, ...] = (),
               scrolled_screenshot: Path | None = None) -> PageCheck:
    """Load ``page`` in a ``width``-px-wide window, wait for every image, and report; each table
    of ``sticky`` is then scrolled sideways (the first one photographed as ``scrolled_screenshot``)."""
    from modernize.report import figures
    driver = open_browser(paths, width, height)
    try:
        # Emulate a phone's CSS viewport exactly (a headless window's size includes no chrome).
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
        driver.get(Path(page).resolve().as_uri())
        driver.execute_async_script("""const done = arguments[arguments.length - 1];
            Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null))).then(() => done(1));""")
        images = driver.execute_script(JS_IMAGES)
        rows = driver.execute_script(f"const t = document.querySelector('{table_selector}');"
                                     "return t ? t.rows.length : -1;")
        scroll = driver.execute_script("return document.documentElement.scrollWidth;")
        errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        cells = driver.execute_script(f"const t = document.querySelector('{table_selector}');"
                                      "return t ? Array.from(t.rows).map(r => Array.from(r.cells)"
                                      ".map(c => c.textContent)) : [];")
        shown = [(alt, figure_text_px(w, nat, kind, pt or figures.MIN_FONT_PT, figures.DPI))
                 for alt, w, nat, kind, pt in driver.execute_script(JS_FIGURES)]
        bottom = driver.execute_script("const r = document.querySelector('.result');"
                                       "return r ? r.getBoundingClientRect().bottom : -1;")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        scrolled = {}
        for k, selector in enumerate(sticky):
            scrolled[selector] = tuple(driver.execute_script(JS_STICKY, selector) or ())
            if k == 0 and scrolled_screenshot is not None:
                driver.save_screenshot(str(scrolled_screenshot))
    finally:
        driver.quit()
    return PageCheck(console_errors=errors, broken_images=[s for s, ok, _ in images if not ok],
                     images_without_alt=[s for s, _, alt in images if not alt], images=len(images),
                     table_rows=int(rows), scroll_width=int(scroll), screenshot=screenshot, sticky=scrolled,
                     figure_text_px=shown, cells=cells, scrolled_screenshot=scrolled_screenshot,
                     result_bottom=float(bottom))


if __name__ == "__main__":  # python tests/browser.py PAGE.html SHOT.png [WIDTH HEIGHT]: check a page, screenshot it
    import sys

    found, why = chromium_paths()
    if found is None:
        sys.exit(f"no browser: {why}")
    w, h = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1280, 800)
    shot = Path(sys.argv[2])
    result = check_page(found, Path(sys.argv[1]), shot, width=w, height=h, sticky=("#lesson", "#ablation"),
                        scrolled_screenshot=shot.with_name(shot.stem + "-scrolled.png"))
    result.cells = result.cells[:2]
    print(result)
