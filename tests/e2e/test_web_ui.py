"""Headless Chromium against the web app, as a person uses it: sign up, chat (the message shows
at once, the answer grows), reload mid-answer (the whole answer ends up on screen, nothing
missing or repeated), Stop on a resumed answer (the partial answer stays, marked), a dropped
connection, markup shown as text, Markdown rendered safely, the rate-limit and full-queue
messages, 200 pieces a second, renaming and deleting a chat, an API key made and revoked, log
out and in, documents (the progress bar reaches 100%, then a cited answer), screenshots of every
page at desktop and phone widths in light and dark (in $TERN_STATE/screenshots), and the weight
of the first load.

The chat tests run against a mock upstream that writes 300 pieces 40 ms apart, so an answer
takes about twelve seconds: long enough to reload and stop in the middle of it on a busy
machine. The documents test runs the real local models (`tern up`)."""
import os
import time
import uuid

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import STATE, side_stack, start_tern, stop_all, wait_until

MOCK_PORT, API_PORT = 17099, 18093
LIMITED_MOCK_PORT, LIMITED_API_PORT = 17100, 18094
FAST_MOCK_PORT, FAST_API_PORT = 17101, 18095
DROP_MOCK_PORT, DROP_API_PORT = 17102, 18096
BUSY_MOCK_PORT, BUSY_API_PORT = 17103, 18097
SCREENSHOTS = STATE / "screenshots"
SLOW_MOCK = ("--tokens", "300", "--delay-ms", "40")
MOCK_ANSWER = "Mock answer" + "".join(f" token {n}" for n in range(1, 300))


def mock_settings(mock_port, **more):
    """A side stack's environment: chat from the mock upstream on `mock_port`, no embeddings."""
    return {"TERN_LLM_BASE_URL": f"http://127.0.0.1:{mock_port}/v1", "TERN_LLM_MODEL": "mock",
            "TERN_EMBEDDING_BASE_URL": "off", "TERN_BCRYPT_COST": "4", **more}


@pytest.fixture(scope="module")
def web(stack):
    """An API and worker in front of the slow mock upstream."""
    with side_stack("web", mock_settings(MOCK_PORT), MOCK_PORT, API_PORT, mock_arguments=SLOW_MOCK) as base:
        yield base


@pytest.fixture
def browser():
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def wait(browser, timeout=60):
    return WebDriverWait(browser, timeout, poll_frequency=0.02)


def sign_up(browser, base):
    """Signs a new user up through the page; returns the e-mail (the password is fixed)."""
    email = f"web-{uuid.uuid4().hex[:10]}@tern.local"
    browser.get(f"{base}/#/signup")
    wait(browser).until(lambda d: d.find_elements(By.ID, "email"))
    browser.find_element(By.ID, "email").send_keys(email)
    password = browser.find_element(By.ID, "password")
    password.send_keys("correct horse battery")
    password.send_keys(Keys.ENTER)
    # The chat page is ready: its model list and its conversation list have loaded.
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option")
                        and d.find_elements(By.CSS_SELECTOR, "#conversation-list[data-loaded]"))
    return email


def stop_answer(browser):
    """Stops the answer being written (so the mock is free for the next test) and waits for it."""
    wait(browser).until(lambda d: d.find_element(By.ID, "stop").is_displayed() and state_of(d, 0) == "streaming")
    browser.find_element(By.ID, "stop").click()
    wait(browser).until(lambda d: state_of(d, 0) == "stopped")


def send(browser, text):
    box = browser.find_element(By.ID, "prompt")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)
    return time.monotonic()


def answers(browser):
    return browser.find_elements(By.CSS_SELECTOR, ".message.assistant")


def state_of(browser, n):
    found = answers(browser)
    return found[n].get_attribute("data-state") if len(found) > n else None


def words(text):
    return " ".join(text.split())


# Records every length the newest answer passes through, inside the page, so the check does not
# depend on how often the test polls.
RECORD_LENGTHS = """
window.answerLengths = [];
new MutationObserver(() => {
  const all = document.querySelectorAll('.message.assistant .body');
  if (all.length) window.answerLengths.push(all[all.length - 1].textContent.length);
}).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
"""


def test_chat_streams_survives_a_reload_and_stops_when_resumed(web, browser):
    sign_up(browser, web)
    browser.execute_script(RECORD_LENGTHS)
    sent_at = send(browser, "Tell me a long story.")

    # Optimistic UI: the message and a typing bubble are there before any answer exists.
    user = wait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".message.user"))[0]
    shown_after = time.monotonic() - sent_at
    assert user.text == "Tell me a long story."
    assert state_of(browser, 0) in ("waiting", "streaming")

    # The answer grows piece by piece; mid-answer, the page is reloaded.
    wait(browser).until(lambda d: len(d.execute_script("return window.answerLengths")) >= 5)
    lengths = browser.execute_script("return window.answerLengths")
    assert lengths == sorted(lengths), f"the answer only ever grows: {lengths}"
    before_reload = answers(browser)[0].text
    assert 0 < len(before_reload) < len(MOCK_ANSWER), "reloaded in the middle of the answer"
    assert "#/chat/" in browser.current_url, "the new conversation is in the address"
    browser.refresh()

    # After the reload: the text so far at once, then the rest live, to the end.
    wait(browser).until(lambda d: state_of(d, 0) in ("streaming", "done"))
    wait(browser).until(lambda d: state_of(d, 0) == "done")
    assert words(answers(browser)[0].text) == MOCK_ANSWER, "the whole answer, nothing missing or repeated"

    # Stop on a second answer, itself resumed after a reload: the partial answer stays, marked.
    browser.execute_script(RECORD_LENGTHS)
    send(browser, "And another one.")
    wait(browser).until(lambda d: len(d.execute_script("return window.answerLengths")) >= 5)
    browser.refresh()
    wait(browser).until(lambda d: state_of(d, 1) == "streaming")
    browser.find_element(By.ID, "stop").click()
    wait(browser).until(lambda d: state_of(d, 1) == "stopped")
    stopped = answers(browser)[1]
    partial = words(stopped.find_element(By.CSS_SELECTOR, ".body").text)
    assert partial and MOCK_ANSWER.startswith(partial) and partial != MOCK_ANSWER, partial
    assert stopped.find_element(By.CSS_SELECTOR, ".note.stopped").text == "Stopped"

    # Reloaded, the conversation shows both answers as stored: the first whole, the second
    # as far as it went, still marked.
    browser.refresh()
    wait(browser).until(lambda d: len(answers(d)) == 2)
    assert words(answers(browser)[0].text) == MOCK_ANSWER
    assert state_of(browser, 1) == "stopped"
    assert MOCK_ANSWER.startswith(words(answers(browser)[1].find_element(By.CSS_SELECTOR, ".body").text))
    print(f"user message shown {shown_after * 1000:.0f} ms after Enter; {len(before_reload)} characters before the reload; "
          f"stopped after {len(partial)} of {len(MOCK_ANSWER)}")


def test_markup_in_a_message_is_shown_as_text(web, browser):
    sign_up(browser, web)
    hostile = '<img src=x onerror="window.pwned=1"><b>bold</b><script>window.pwned=1</script>'
    send(browser, hostile)
    user = wait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".message.user"))[0]
    assert user.text == hostile
    assert user.find_elements(By.CSS_SELECTOR, "img, b, script") == []
    wait(browser).until(lambda d: state_of(d, 0) == "done")
    # The conversation list shows the title (the message) as text too.
    title = wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#conversation-list a"))[0]
    assert title.text.startswith("<img")
    assert browser.execute_script("return window.pwned === undefined")


def test_the_first_page_load_is_under_100_kb(web, browser):
    sign_up(browser, web)
    browser.get(f"{web}/")
    wait(browser).until(lambda d: d.find_elements(By.ID, "prompt"))
    wait(browser).until(lambda d: d.execute_script("return document.readyState") == "complete")
    entries = browser.execute_script("""
        return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
            .map(e => [e.name, e.decodedBodySize, e.initiatorType]);""")
    total = sum(size for _, size, _ in entries)
    print(f"first load: {total} bytes uncompressed in {len(entries)} responses: "
          + ", ".join(f"{name.split('/', 3)[-1] or '/'} {size}" for name, size, _ in entries))
    assert any(name.endswith("/app.js") for name, _, _ in entries) and any(name.endswith("/chat.js") for name, _, _ in entries)
    assert total < 100_000


PAGES = ("chat", "documents", "keys", "usage")
SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


def test_screenshots_of_every_page(web, browser):
    sign_up(browser, web)
    send(browser, "Show me some **Markdown** and `code`, please.")
    wait(browser).until(lambda d: state_of(d, 0) == "done")
    conversation = browser.current_url.split("#")[1]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        for size, (width, height) in SIZES.items():
            browser.set_window_size(width, height)
            for page in PAGES:
                browser.get(f"{web}/#{conversation}" if page == "chat" else f"{web}/#/{page}")
                browser.refresh()
                ready = {"chat": ".message.assistant[data-state=done]", "documents": "#upload", "keys": "#new-key",
                         "usage": "svg.chart"}[page]
                wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))
                dark = browser.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches")
                assert dark == (scheme == "dark")
                path = SCREENSHOTS / f"{page}-{size}-{scheme}.png"
                browser.save_screenshot(str(path))
                assert path.stat().st_size > 5000
    print(f"{len(PAGES) * len(SIZES) * 2} screenshots in {SCREENSHOTS}")


RECORD_PROGRESS = """
window.progressValues = [];
new MutationObserver(() => {
  const bar = document.querySelector('#documents li progress');
  if (bar) window.progressValues.push(bar.value);
}).observe(document.getElementById('documents'), {subtree: true, childList: true, attributes: true});
"""


def test_a_document_uploaded_in_the_browser_is_read_then_cited(stack, browser, tmp_path):
    """The real local models (tern up): the embedding model reads the document, the chat
    model answers from it, streaming."""
    sign_up(browser, stack.base_url)
    document = tmp_path / "lighthouse-keeping.md"
    document.write_text("# Lighthouse keeping\n\n" + "\n\n".join(
        f"The keeper of the Tern Point lighthouse winds the clockwork every {n + 2} hours and logs the weather." for n in range(30)))
    browser.get(f"{stack.base_url}/#/documents")
    wait(browser).until(lambda d: d.find_elements(By.ID, "file"))
    browser.execute_script(RECORD_PROGRESS)
    browser.find_element(By.ID, "file").send_keys(str(document))
    browser.find_element(By.CSS_SELECTOR, "#upload button").click()
    wait(browser, 300).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#documents li[data-status=ready]"))
    item = browser.find_element(By.CSS_SELECTOR, "#documents li")
    assert item.find_element(By.TAG_NAME, "progress").get_attribute("value") == "100"
    assert item.find_element(By.CSS_SELECTOR, ".state").text.startswith("Ready")
    progress = browser.execute_script("return window.progressValues")
    assert progress == sorted(progress), f"the progress only ever grows: {progress}"

    browser.get(f"{stack.base_url}/#/chat")
    wait(browser).until(lambda d: d.find_elements(By.ID, "use-documents"))
    browser.find_element(By.ID, "use-documents").click()
    browser.execute_script(RECORD_LENGTHS)
    send(browser, "How often does the keeper wind the clockwork?")
    wait(browser, 300).until(lambda d: state_of(d, 0) == "done")
    cited = answers(browser)[0].find_elements(By.CSS_SELECTOR, ".citations li")
    assert cited and "lighthouse-keeping" in cited[0].text, [c.text for c in cited]
    lengths = [n for n in browser.execute_script("return window.answerLengths") if n]
    assert len(set(lengths)) >= 3, f"the real model's answer appeared in steps: {lengths[-10:]}"
    print(f"progress seen at {sorted(set(progress))}; {len(cited)} citations; answer grew through {len(set(lengths))} lengths")


def test_a_rate_limited_message_says_when_to_try_again(stack, browser):
    """Two requests a minute per user: the chat page's own two loads spend them, so the message
    sent next is refused, and the answer bubble says so in plain words."""
    settings = mock_settings(LIMITED_MOCK_PORT, TERN_RATE_LIMIT_USER_RPM="2", TERN_RATE_LIMIT_BURST="2")
    with side_stack("web-limited", settings, LIMITED_MOCK_PORT, LIMITED_API_PORT) as base:
        sign_up(browser, base)
        send(browser, "Hello?")
        wait(browser).until(lambda d: state_of(d, 0) == "error")
        note = answers(browser)[0].find_element(By.CSS_SELECTOR, ".note.error").text
        assert note.startswith("You are sending requests too fast. Try again in ") and note.endswith("seconds."), note
        assert browser.find_element(By.ID, "send").is_displayed(), "the composer is ready again"
        print(f"refused: {note}")


def test_an_answer_at_200_pieces_a_second_arrives_whole(stack, browser):
    """1,000 pieces 5 ms apart: the page renders at most once a frame and drops nothing. The
    main thread's long tasks (over 50 ms) while it streams are printed, not asserted."""
    fast = ("--tokens", "1000", "--delay-ms", "5")
    with side_stack("web-fast", mock_settings(FAST_MOCK_PORT), FAST_MOCK_PORT, FAST_API_PORT, mock_arguments=fast) as base:
        sign_up(browser, base)
        browser.execute_script("""window.longTasks = [];
            new PerformanceObserver((list) => window.longTasks.push(...list.getEntries().map((e) => Math.round(e.duration))))
              .observe({type: 'longtask'});""")
        send(browser, "Go fast.")
        wait(browser, 300).until(lambda d: state_of(d, 0) == "done")
        expected = "Mock answer" + "".join(f" token {n}" for n in range(1, 1000))
        assert words(answers(browser)[0].text) == expected
        print(f"{len(expected)} characters in 1,000 pieces; long tasks while streaming: {browser.execute_script('return window.longTasks')}")


RENDER_MARKDOWN = """
const done = arguments[arguments.length - 1];
import('/markdown.js').then(({ renderMarkdown }) => {
  const box = document.createElement('div');
  box.append(renderMarkdown(arguments[0]));
  done(box.innerHTML);
});
"""


def test_answers_are_rendered_from_markdown_safely(web, browser):
    browser.get(f"{web}/#/login")
    wait(browser).until(lambda d: d.find_elements(By.ID, "email"))
    render = lambda text: browser.execute_async_script(RENDER_MARKDOWN, text)
    assert render("# Title\n\nSome **bold**, *em* and `a<b>`.\n\n- one\n- two\n\n```js\nif (a < b) alert(1)\n```") == (
        '<h3>Title</h3><p>Some <strong>bold</strong>, <em>em</em> and <code>a&lt;b&gt;</code>.</p>'
        '<ul><li>one</li><li>two</li></ul><pre><code data-language="js">if (a &lt; b) alert(1)</code></pre>')
    hostile = render('<img src=x onerror=alert(1)> [click](javascript:alert(1)) [ok](https://example.org/a) snake_case_name')
    assert "<img" not in hostile and 'href="javascript' not in hostile, hostile
    assert '<a href="https://example.org/a" rel="noopener noreferrer nofollow" target="_blank">ok</a>' in hostile
    assert "snake_case_name" in hostile
    assert render("**bold *em* more** and *it **b** it*") == (
        "<p><strong>bold <em>em</em> more</strong> and <em>it <strong>b</strong> it</em></p>")
    assert render("2 * 3 * 4, [w](https://en.wikipedia.org/wiki/Tern_(bird))") == (
        '<p>2 * 3 * 4, <a href="https://en.wikipedia.org/wiki/Tern_(bird)" rel="noopener noreferrer nofollow" target="_blank">w</a></p>')
    # Mid-stream, an unclosed fence is code so far.
    assert render("```\nstill going") == "<pre><code>still going</code></pre>"


def test_an_answer_goes_on_after_its_connection_drops(stack, browser):
    """The API process serving the page is killed mid-answer and another takes its port: the
    page's event stream reconnects by itself with Last-Event-ID and the answer ends whole."""
    env = {**os.environ, **mock_settings(DROP_MOCK_PORT), "TERN_QUEUE": f"web-drop-{uuid.uuid4().hex[:8]}", "TERN_PORT": str(DROP_API_PORT)}
    base = f"http://127.0.0.1:{DROP_API_PORT}"
    healthy = lambda: requests.get(base + "/healthz", timeout=5).ok
    processes = [start_tern(["mock-llm", "--port", str(DROP_MOCK_PORT), *SLOW_MOCK], env, "web-drop-mock"),
                 start_tern(["worker"], env, "web-drop-worker")]
    try:
        api = start_tern(["api"], env, "web-drop-api")
        processes.append(api)
        wait_until(healthy, message="the API")
        sign_up(browser, base)
        browser.execute_script(RECORD_LENGTHS)
        send(browser, "Keep talking.")
        wait(browser).until(lambda d: len(d.execute_script("return window.answerLengths")) >= 5)
        api.kill()
        api.wait()
        seen = len(answers(browser)[0].text)
        processes.append(start_tern(["api"], env, "web-drop-api-2"))
        wait_until(healthy, message="the second API")
        wait(browser, 120).until(lambda d: state_of(d, 0) == "done")
        assert words(answers(browser)[0].text) == MOCK_ANSWER
        lengths = browser.execute_script("return window.answerLengths")
        assert lengths == sorted(lengths), "the answer never went back or started over"
        print(f"connection dropped after {seen} characters; the answer ended whole ({len(MOCK_ANSWER)})")
    finally:
        stop_all(processes)


def test_a_full_queue_says_the_service_is_busy_and_when_to_retry(stack, browser):
    """Admission control at one waiting job and one worker slot: with one answer being written
    and one waiting, the message sent from the page is refused at once, in plain words."""
    settings = mock_settings(BUSY_MOCK_PORT, TERN_ADMISSION_BACKLOG="1")
    with side_stack("web-busy", settings, BUSY_MOCK_PORT, BUSY_API_PORT, mock_arguments=SLOW_MOCK, worker_concurrency=1) as base:
        sign_up(browser, base)
        session = requests.Session()
        for cookie in browser.get_cookies():
            session.cookies.set(cookie["name"], cookie["value"])
        csrf = session.get(base + "/v1/auth/session", timeout=30).json()["csrf_token"]
        chat = {"type": "chat.completion", "input": {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}]}}
        create = lambda: session.post(base + "/v1/jobs", json=chat, headers={"X-CSRF-Token": csrf}, timeout=30)
        running = create()
        assert running.status_code == 202, running.text
        wait_until(lambda: session.get(base + f"/v1/jobs/{running.json()['id']}", timeout=30).json()["status"] == "running",
                   message="the first job to run")
        assert create().status_code == 202
        send(browser, "Am I in?")
        wait(browser).until(lambda d: state_of(d, 0) == "error")
        note = answers(browser)[0].find_element(By.CSS_SELECTOR, ".note.error").text
        assert note.startswith("The service is busy") and "Try again in 5 seconds." in note, note
        print(f"refused: {note}")


def test_conversations_keys_and_the_session_are_managed_from_the_page(web, browser):
    email = sign_up(browser, web)
    send(browser, "A chat to rename")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#conversation-list li a"))
    stop_answer(browser)

    # Rename: the pencil, a new title, Enter; the list and the server both have it.
    browser.find_element(By.CSS_SELECTOR, "#conversation-list li button[title=Rename]").click()
    box = browser.find_element(By.CSS_SELECTOR, "#conversation-list form.rename input")
    # Typed over the selected title (WebDriver's clear() would leave the box, which cancels).
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("Renamed chat", Keys.ENTER)
    wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, "#conversation-list li a").text == "Renamed chat")
    browser.refresh()
    wait(browser).until(lambda d: [a.text for a in d.find_elements(By.CSS_SELECTOR, "#conversation-list li a")] == ["Renamed chat"])

    # Delete, confirmed: gone from the list, and after a reload too.
    browser.find_element(By.CSS_SELECTOR, "#conversation-list li button[title=Delete]").click()
    browser.switch_to.alert.accept()
    wait(browser).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#conversation-list li"))
    browser.get(f"{web}/#/chat")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#conversation-list[data-loaded]"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#conversation-list li")

    # An API key: shown once, works against the API, then revoked from the page.
    browser.get(f"{web}/#/keys")
    wait(browser).until(lambda d: d.find_elements(By.ID, "key-name"))
    browser.find_element(By.ID, "key-name").send_keys("laptop", Keys.ENTER)
    secret = wait(browser).until(lambda d: d.find_elements(By.ID, "secret"))[0].text
    authorized = {"Authorization": f"Bearer {secret}"}
    assert requests.get(f"{web}/v1/models", headers=authorized, timeout=30).status_code == 200
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#keys li button"))[0].click()
    browser.switch_to.alert.accept()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#keys li.revoked"))
    assert requests.get(f"{web}/v1/models", headers=authorized, timeout=30).status_code == 401
    browser.refresh()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#keys li.revoked"))
    assert secret not in browser.page_source, "the secret is shown only once"

    # Log out: the log-in page, and the session no longer works; log in again.
    browser.find_element(By.ID, "logout").click()
    wait(browser).until(lambda d: d.find_elements(By.ID, "auth-form"))
    browser.get(f"{web}/#/keys")
    wait(browser).until(lambda d: d.find_elements(By.ID, "auth-form"))
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "password").send_keys("correct horse battery", Keys.ENTER)
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#keys li.revoked"))
