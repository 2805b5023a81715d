"""`demvae demo` in a real browser: headless Chromium (Debian's chromium and chromium-driver, which `.ci/run`
installs) opens the app, chooses a component, presses Generate and finds the generated sentences on the page; the
screenshot is kept in $DEMVAE_ARTIFACTS (else the test's temporary folder, printed)."""

import argparse
import os
import socket
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_model, write_dialog_corpus

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(f"the browser test needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install -y chromium chromium-driver", allow_module_level=True)
pytest.importorskip("gradio", reason="the demo's tests need gradio: pip install -e '.[dev]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium: pip install -e '.[dev]'")
from demvae.demo_app import build_app  # noqa: E402
from demvae.demo_explorer import ComponentExplorer  # noqa: E402
from demvae.demo_launch import loaded_and_placed  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# no network, no first-run work, no profile of the user's: a browser that only opens the page it is given
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900")


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path, prefix='chromium-')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(url, explorer) of a tiny Gaussian model's app on a free port of 127.0.0.1."""
    monkeypatch.setenv("DEMVAE_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    corpus = write_dialog_corpus(tmp_path / "corpus")
    model_dir = save_tiny_model(tmp_path / "model", corpus)
    args = argparse.Namespace(model=str(model_dir), dataset=str(corpus), test_file=None, max_sentences=100,
                              num_threads=1)
    explorer = ComponentExplorer(*loaded_and_placed(args))
    app = build_app(explorer, title="DEM-VAE explorer: browser test")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", explorer
    finally:
        app.close()
        torch.set_num_threads(threads)


def test_choose_a_component_press_generate_and_read_the_sentences(browser, served, tmp_path):
    url, explorer = served
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#component input"))[0].click()
    option = wait.until(lambda page: [item for item in page.find_elements(By.CSS_SELECTOR, "[role=option]")
                                      if item.text.strip() == "2"])[0]
    option.click()
    wait.until(lambda page: "component 2" in page.find_element(By.CSS_SELECTOR, "#facts").text)
    browser.find_element(By.CSS_SELECTOR, "#generate").click()
    shown = wait.until(lambda page: page.find_element(By.CSS_SELECTOR, "#generated textarea").get_attribute("value"))

    assert shown.split("\n") == explorer.generate(group=0, component=2, num_sentences=10)  # the page's defaults
    artifacts = Path(os.environ.get("DEMVAE_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "demo_components_tab.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    print(f"screenshot of the demo: {screenshot}")
