"""Headless Chromium (Debian's chromium and chromium-driver, through selenium) with the
network cut off: the API docs render their operations and the admin overview draws its
charts from this server alone."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.operators import code, make_operator

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are missing: `make test` installs them (deploy/local/system-deps.sh)")
    profile = tempfile.mkdtemp(prefix="ferry-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # The network cut off: every host but loopback goes to a proxy that is not there.
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=localhost;127.0.0.1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def loaded_from(driver: webdriver.Chrome) -> set[str]:
    """The origins of every resource the page loaded."""
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return {"/".join(name.split("/")[:3]) for name in names}


def test_the_api_docs_render_their_operations_offline(browser, live_server):
    browser.get(f"{live_server.url}/api/docs/")
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 10)
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert "/api/v1/transfers" in {p.replace("\u200b", "") for p in paths}
    assert loaded_from(browser) <= {live_server.url}


def test_redoc_renders_offline(browser, live_server):
    browser.get(f"{live_server.url}/api/redoc/")
    WebDriverWait(browser, 30).until(lambda d: "/api/v1/transfers" in d.find_element(By.TAG_NAME, "body").text)
    # Redoc's bundle asks for its vendor's logo and hides it when that fails (README);
    # nothing else comes from outside.
    assert loaded_from(browser) <= {live_server.url, "https://cdn.redoc.ly"}


def test_the_admin_overview_draws_its_charts(browser, live_server, moto):
    ops = make_operator("ops", superuser=True, password="a-long-enough-password")
    browser.get(f"{live_server.url}/admin/login/?next=/admin/overview/")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys("a-long-enough-password")
    browser.find_element(By.NAME, "otp_token").send_keys(code(ops))  # the second factor
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: "Fleet overview" in d.title)
    charts = browser.find_elements(By.CSS_SELECTOR, "svg[role=img]")
    assert len(charts) >= 1  # the bytes chart is drawn only when something was delivered
    assert charts[0].size["width"] > 100 and charts[0].size["height"] > 50
    assert "Partitions" in browser.find_element(By.TAG_NAME, "body").text
    assert loaded_from(browser) <= {live_server.url}
