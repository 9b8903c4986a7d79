"""End to end: the web console at /console, in Debian's headless Chromium driven by
Playwright, against the real server. A person signs in with a key, creates a key and sees
it once, chats in the playground with a streamed answer, grounds an answer in a knowledge
base it filled through the page, runs a deployed tool server-side, and reads the usage
charts. Each page is screenshotted: into TENSORAS_CONSOLE_SCREENSHOTS when set
(`make console-screenshots` writes docs/console/), else into the test's temporary folder."""

import os
import re
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from conftest import FUNCTIONS, REPO, Server, new_key

CHROMIUM = os.environ.get("TENSORAS_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking switches Chromium keeps dialling Google's hosts, which
# this machine's closed network refuses; --no-sandbox because the tests run as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A chat on the 135M model takes seconds on 2 loaded cores; ingestion too. Generous, since a
# timeout here only bounds a failure, never decides a pass.
SLOW_MS = 180_000
MODEL = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
FACT = b"Security memo. The access code for the Zephyr vault is 4417. Only two people know it."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    # The catalogue with a price on the chat model (the seed's is 0), so usage has a cost.
    manifests = root / "manifests"
    manifests.mkdir()
    for m in (REPO / "models").glob("*.toml"):
        text = m.read_text()
        if m.stem == MODEL:
            text = re.sub(r"\[price\][^\[]*", "[price]\ninput = 30.0\noutput = 60.0\n", text)
        (manifests / m.name).write_text(text)
    s = Server(root / "data", new_key(), "--manifests", str(manifests)).start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup-tests` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    path = os.environ.get("TENSORAS_CONSOLE_SCREENSHOTS")
    out = Path(path) if path else tmp_path_factory.mktemp("console-shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    # Anything the page logs as an error (a failed script, a CSP refusal) fails the test.
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    # API errors the test provoked on purpose show in the page; only script errors count.
    assert not [e for e in errors if "Failed to load resource" not in e], errors


def api(server, method, path, key=None, **kw):
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    return requests.request(method, server.url + "/v1" + path, headers=headers, timeout=300, **kw)


def sign_in(page: Page, server, key=None):
    page.goto(server.url + "/console/")
    page.get_by_test_id("api-key").fill(key or server.api_key)
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("nav-playground")).to_be_visible()


def go(page: Page, name: str):
    page.get_by_test_id(f"nav-{name}").click()
    expect(page).to_have_url(re.compile(f"#/{name}$"))


def test_the_console_is_served_with_a_strict_policy(server):
    r = requests.get(server.url + "/console", allow_redirects=False, timeout=10)
    assert r.status_code == 308 and r.headers["location"] == "/console/"
    r = requests.get(server.url + "/console/", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text[:200]
    assert "Tensoras console" in r.text
    csp = r.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    # Every script and style the page names is served, with a long cache (hashed names).
    assets = re.findall(r'(?:src|href)="/console/(assets/[^"]+)"', r.text)
    assert assets, r.text
    for a in assets:
        ar = requests.get(f"{server.url}/console/{a}", timeout=10)
        assert ar.status_code == 200, a
        assert "immutable" in ar.headers["cache-control"]
    r = requests.get(server.url + "/console/no-such-file.js", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"


def test_sign_in_refuses_a_wrong_key_and_keeps_the_right_one(page, server, shots):
    page.goto(server.url + "/console/")
    page.get_by_test_id("api-key").fill(new_key())
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("API key")
    expect(page.get_by_test_id("nav-playground")).to_have_count(0)
    page.screenshot(path=str(shots / "sign-in.png"))
    sign_in(page, server)
    # A reload keeps the session (sessionStorage); signing out forgets the key.
    page.reload()
    expect(page.get_by_test_id("nav-keys")).to_be_visible()
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("api-key")).to_be_visible()


def test_a_new_key_is_shown_once_works_and_can_be_revoked(page, server, shots):
    sign_in(page, server)
    go(page, "keys")
    page.get_by_test_id("key-name").fill("console-made")
    page.get_by_test_id("key-plan").select_option("free")
    page.get_by_test_id("key-create").click()
    secret = page.get_by_test_id("new-key-secret")
    expect(secret).to_have_text(re.compile(r"^tns_[A-Za-z0-9_-]{43}$"))
    key = secret.inner_text().strip()
    page.screenshot(path=str(shots / "keys.png"))
    # The key works, on the plan chosen in the form.
    r = api(server, "GET", "/models", key=key)
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-requests"] == "30", r.headers
    made = [k for k in api(server, "GET", "/keys").json()["data"] if k["name"] == "console-made"]
    assert len(made) == 1 and made[0]["plan"] == "free", made
    key_id = made[0]["id"]
    page.get_by_test_id("new-key-dismiss").click()
    expect(page.get_by_test_id("new-key-secret")).to_have_count(0)
    page.reload()
    row = page.locator(f'tr[data-key-id="{key_id}"]')
    expect(row).to_contain_text("console-made")
    assert key not in page.content()
    # A plan change from the row is the operator's PATCH.
    row.get_by_test_id("key-plan-select").select_option("developer")
    wait_for(lambda: next(k["plan"] for k in api(server, "GET", "/keys").json()["data"] if k["id"] == key_id) == "developer")
    revoke = row.get_by_test_id("key-revoke")
    revoke.click()
    expect(revoke).to_contain_text("Confirm")
    revoke.click()
    expect(page.locator(f'tr[data-key-id="{key_id}"]')).to_have_count(0)
    assert api(server, "GET", "/models", key=key).status_code == 401


def wait_for(check, timeout=30.0):
    """Polls `check` (the API's view of what the page just did) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the API never showed the page's change"
        time.sleep(0.2)


def send(page: Page, text: str):
    page.get_by_test_id("pg-input").fill(text)
    page.get_by_test_id("pg-send").click()
    answer = page.locator('[data-testid=pg-message][data-role=assistant]').last
    expect(answer).to_have_attribute("data-streaming", "false", timeout=SLOW_MS)
    expect(page.get_by_test_id("error")).to_have_count(0)
    return answer


def test_the_playground_streams_an_answer_with_sampling(page, server, shots):
    sign_in(page, server)
    go(page, "playground")
    page.get_by_test_id("pg-model").select_option(MODEL)
    page.get_by_test_id("pg-system").fill("You are a cheerful assistant. Answer in one sentence.")
    page.get_by_test_id("pg-temperature").fill("0.8")
    page.get_by_test_id("pg-max-tokens").fill("40")
    page.get_by_test_id("pg-seed").fill("7")
    answer = send(page, "Name a colour of the sky.")
    # Streamed: the text arrived in several deltas, and the usage came at the end.
    assert int(answer.get_attribute("data-chunks")) > 1
    first = answer.inner_text()
    expect(page.get_by_test_id("pg-usage")).to_be_visible()
    # The seed reaches the server: the same question sampled again gives the same answer.
    page.get_by_test_id("pg-clear").click()
    expect(page.get_by_test_id("pg-message")).to_have_count(0)
    assert send(page, "Name a colour of the sky.").inner_text() == first
    # A second turn carries the first.
    second = send(page, "And of grass?")
    assert int(second.get_attribute("data-chunks")) > 1
    expect(page.locator('[data-testid=pg-message][data-role=user]')).to_have_count(2)
    page.screenshot(path=str(shots / "playground.png"))


def test_a_knowledge_base_filled_in_the_page_grounds_a_chat(page, server, shots, tmp_path):
    sign_in(page, server)
    go(page, "knowledge-bases")
    page.get_by_test_id("kb-name").fill("handbook")
    page.get_by_test_id("kb-description").fill("Security memos")
    page.get_by_test_id("kb-create").click()
    kb_id = wait_kb(server, "handbook")
    page.locator(f'tr[data-kb="{kb_id}"]').click()
    expect(page.get_by_test_id("kb-detail")).to_be_visible()
    doc = tmp_path / "vault.txt"
    doc.write_bytes(FACT)
    page.get_by_test_id("kb-upload-file").set_input_files(str(doc))
    page.get_by_test_id("kb-upload").click()
    # The page polls the source's status until ingestion finishes.
    source = page.locator("[data-testid=kb-sources] tr[data-source]")
    expect(source).to_have_count(1)
    expect(source).to_have_attribute("data-status", "completed", timeout=SLOW_MS)
    page.get_by_test_id("kb-query").fill("What is the access code for the Zephyr vault?")
    page.get_by_test_id("kb-retrieve").click()
    expect(page.get_by_test_id("kb-result").first).to_contain_text("4417")
    page.screenshot(path=str(shots / "knowledge-bases.png"))

    go(page, "playground")
    page.get_by_test_id("pg-model").select_option(MODEL)
    page.get_by_test_id("pg-temperature").fill("0")
    page.locator(f'input[data-testid=pg-kb-option][value="{kb_id}"]').check()
    send(page, "What is the access code for the Zephyr vault?")
    expect(page.get_by_test_id("pg-citation").first).to_contain_text("vault.txt")
    page.screenshot(path=str(shots / "playground-rag.png"))

    go(page, "files")
    expect(page.get_by_test_id("files-table")).to_contain_text("vault.txt")
    page.screenshot(path=str(shots / "files.png"))


def wait_kb(server, name) -> str:
    found = []

    def made():
        found[:] = [kb["id"] for kb in api(server, "GET", "/knowledge-bases").json()["data"] if kb["name"] == name]
        return bool(found)

    wait_for(made)
    return found[0]


def test_a_tool_deployed_in_the_page_runs_server_side(page, server, shots):
    sign_in(page, server)
    go(page, "functions")
    page.get_by_test_id("fn-file").set_input_files(str(FUNCTIONS / "calc.wasm"))
    page.get_by_test_id("fn-name").fill("calc")
    page.get_by_test_id("fn-kind").select_option("tool")
    page.get_by_test_id("fn-deploy").click()
    expect(page.get_by_test_id("fn-deployed")).to_contain_text("calc")
    expect(page.locator('tr[data-function="calc"]')).to_be_visible()

    go(page, "playground")
    page.get_by_test_id("pg-model").select_option(MODEL)
    page.get_by_test_id("pg-temperature").fill("0")
    page.locator('input[data-testid=pg-tool-option][value="calc"]').check()
    page.get_by_test_id("pg-tool-choice").select_option("required")
    send(page, "Use the calculator: what is 12345 * 678?")
    call = page.get_by_test_id("pg-server-tool-call").first
    expect(call).to_contain_text("calc")
    expect(call).to_contain_text("8369910")

    # The call is in the function's logs.
    go(page, "functions")
    page.locator('tr[data-function="calc"]').get_by_text("calc", exact=True).click()
    expect(page.get_by_test_id("fn-detail")).to_be_visible()
    expect(page.get_by_test_id("fn-log").first).to_be_visible()
    expect(page.get_by_test_id("fn-versions")).to_contain_text("1")
    page.screenshot(path=str(shots / "functions.png"))


def test_usage_shows_charts_that_match_the_api(page, server, shots):
    # At least one chat, so that this test stands alone too.
    r = api(server, "POST", "/chat/completions", json={"model": MODEL, "max_tokens": 5,
                                                       "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200, r.text
    r = api(server, "POST", "/embeddings", json={"model": EMBED, "input": ["one", "two"]})
    assert r.status_code == 200, r.text
    sign_in(page, server)
    go(page, "usage")
    expect(page.locator("[data-testid=usage-chart-tokens] canvas")).to_have_count(1)
    expect(page.locator("[data-testid=usage-chart-cost] canvas")).to_have_count(1)
    total = api(server, "GET", "/usage").json()["total"]
    expect(page.get_by_test_id("usage-total-requests")).to_have_text(str(total["requests"]))
    tokens = total["input_tokens"] + total["output_tokens"]
    expect(page.get_by_test_id("usage-total-tokens")).to_have_text(re.compile(f"^{tokens:,}$|^{tokens}$"))
    expect(page.get_by_test_id("usage-table")).to_contain_text(MODEL)
    expect(page.get_by_test_id("usage-table")).to_contain_text(EMBED)
    # The cost at the catalogue's price, rounded for people (cents, or 3 digits below one).
    assert total["cost_usd"] > 0, total
    shown = float(page.get_by_test_id("usage-total-cost").inner_text())
    assert abs(shown - total["cost_usd"]) <= max(0.005, total["cost_usd"] * 0.001), (shown, total)
    page.screenshot(path=str(shots / "usage.png"))
