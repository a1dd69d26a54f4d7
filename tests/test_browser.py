"""The chat page in a real headless browser (Debian chromium + chromedriver, driven by selenium):
type a question, press Enter, see the answer and the cited passages with the highlighted sentence."""
from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian chromium/chromium-driver not installed (make install does it as root)"),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--window-size=1000,1400", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline
                f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def test_question_enter_cited_passages(browser, live, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live + "/")
    box = browser.find_element(By.ID, "q")
    box.send_keys("海门中学清华北大录取目标是多少人" + Keys.ENTER)
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".passage")) == 5)
    answer = browser.find_element(By.ID, "answer")
    assert answer.is_displayed() and "清华北大录取不少于8人" in answer.text and "[1]" in answer.text
    first = browser.find_elements(By.CSS_SELECTOR, ".passage")[0]
    assert "海门区教育体育局2024年工作计划" in first.find_element(By.CSS_SELECTOR, ".meta").text
    assert "清华北大录取不少于8人" in first.find_element(By.TAG_NAME, "mark").text
    link = first.find_element(By.TAG_NAME, "a").get_attribute("href")
    assert "/documents/004_6f03f12d06f5859c?start=" in link
    browser.save_screenshot(str(tmp_path / "chat.png"))
    browser.get(link)  # the citation link opens the exact source slice
    assert "清华北大录取不少于8人" in browser.find_element(By.TAG_NAME, "body").text


def test_api_docs_render_offline(browser, live):
    """Swagger UI and ReDoc come from local files: with every other host unresolvable they still render."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live + "/docs")
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock-summary-path"))
    paths = {e.text.replace("\u200b", "") for e in browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock-summary-path")}
    assert {"/ask", "/healthz", "/documents"} <= paths, paths
    browser.get(live + "/redoc")
    WebDriverWait(browser, 60).until(lambda d: "/ask" in d.find_element(By.TAG_NAME, "body").text)
