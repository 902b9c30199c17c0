"""Headless Chromium against the web page: optimistic user message, answer streaming in."""
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import STATE


@pytest.fixture
def browser():
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def send(browser, text):
    box = browser.find_element(By.ID, "prompt")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)
    return time.monotonic()


# Records every length the answer bubble's text passes through, inside the page, so the check
# does not depend on how often the test polls.
RECORD_LENGTHS = """
window.answerLengths = [];
new MutationObserver(() => {
  const bubble = document.querySelector('.message.assistant');
  if (bubble) window.answerLengths.push(bubble.textContent.length);
}).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
"""


def test_message_shows_at_once_and_answer_streams_in(stack, browser):
    browser.get(f"{stack.base_url}/#key={stack.key}")
    browser.execute_script(RECORD_LENGTHS)
    prompt = "Write two sentences about the sea."
    sent_at = send(browser, prompt)

    # Optimistic UI: the user's message is on screen before any answer exists.
    user = WebDriverWait(browser, 10, poll_frequency=0.02).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".message.user"))[0]
    assert user.text == prompt
    assistant = browser.find_element(By.CSS_SELECTOR, ".message.assistant")
    shown_after = time.monotonic() - sent_at

    # The answer grows over time, piece by piece, until it is done.
    WebDriverWait(browser, 300).until(lambda d: assistant.get_attribute("data-state") is not None)
    assert assistant.get_attribute("data-state") == "done", assistant.text
    final = assistant.text
    lengths = browser.execute_script("return window.answerLengths")
    growth = sorted(set(n for n in lengths if 0 < n < len(final)))
    assert len(growth) >= 3, f"expected the answer to appear in steps, saw lengths {lengths[-20:]}"
    assert lengths == sorted(lengths), "the answer only ever grows"
    assert final.strip()
    print(f"user message shown {shown_after * 1000:.0f} ms after Enter; answer seen at {len(growth)} partial lengths")
    (STATE / "screenshots").mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(STATE / "screenshots" / "chat.png"))


def test_markup_in_a_message_is_shown_as_text(stack, browser):
    browser.get(f"{stack.base_url}/#key={stack.key}")
    hostile = '<img src=x onerror="window.pwned=1"><b>bold</b><script>window.pwned=1</script>'
    send(browser, hostile)
    user = WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".message.user"))[0]
    assert user.text == hostile
    assert user.find_elements(By.CSS_SELECTOR, "img, b, script") == []
    assert browser.execute_script("return window.pwned === undefined")
    # Let the answer finish, so no job is left running when the suite stops the stack.
    WebDriverWait(browser, 300).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".message.assistant").get_attribute("data-state") is not None)
