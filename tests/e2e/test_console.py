"""The web console in a real browser (Debian's Chromium, driven by Playwright) against a real
platform and console process: two parties in two organisations agree on a task, a third sees
nothing of it, and forms posted without the page's CSRF token or from another site are refused.

A screenshot of each page is saved under ``$CLOISTER_TEST_ARTIFACTS/console`` (default
``test-artifacts/console``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import playwright.sync_api as playwright_api
import pytest
from conftest import admin, audit_entries, login
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from http_fixture_server import LOOPBACK_ENV
from test_list_tasks import encrypted_input

from cloister._proto.teaclave_frontend_service_pb2 import ListFunctionsRequest
from cloister.attestation.identity import open_backend
from cloister.console.link import PlatformLink
from cloister.console.tasks import MAX_EVENT_STREAMS_PER_USER
from cloister.errors import AuthenticationError
from cloister.rpc import addresses
from cloister.rpc.identity import obtain_identity
from cloister.rpc.runtime import deployment_of
from cloister.sdk import AccessDeniedError, Client, Credentials, DataMap, FunctionArgument, FunctionInput, OwnerList
from cloister.sdk._receipts import Receipt
from cloister.sdk._trust import Trust
from cloister.testing import RunningPlatform, start_platform

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("CLOISTER_TEST_ARTIFACTS", "test-artifacts")) / "console"
SOURCE = b'def entrypoint(argv):\n    """Agree on a message."""\n    return "agreed: " + argv[1]\n'

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"needs Debian's Chromium at {CHROMIUM}")


FAILURES_PER_ADDRESS = 3


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    env = {**LOOPBACK_ENV, "CLOISTER_AUTHENTICATION__LOGIN_FAILURES_PER_ADDRESS": str(FAILURES_PER_ADDRESS)}
    with start_platform(tmp_path_factory.mktemp("console"), env=env, console=True) as running:
        yield running


@pytest.fixture(scope="module")
def console_url(platform: RunningPlatform) -> str:
    url = addresses.published(platform.platform.settings, "console")
    assert url is not None and url.startswith("https://127.0.0.1:")
    return url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def people(platform: RunningPlatform) -> None:
    """Alice and Bob of two organisations, Eve of a third, and Fiona who writes functions:
    ``console_<name>``, password ``<name>-password``."""
    root = admin(platform)
    for name in ("alice", "bob", "eve"):
        root.auth.user_register(f"console_{name}", f"{name}-password", "DataOwner", f"org_{name}")
    root.auth.user_register("console_fiona", "fiona-password", "FunctionOwner", "")
    root.close()


@pytest.fixture(scope="module")
def parties(platform: RunningPlatform, people: None) -> dict[str, str]:
    """A public Python function, and Alice's task of it on Bob's data, which Bob has assigned but
    nobody has approved. Returns ids by name."""
    root = admin(platform)
    function_id = root.frontend.register_function(
        "agree", "Agree on a message", "python", payload=SOURCE,
        arguments=[FunctionArgument("message")], inputs=[FunctionInput("bobs_data")],
    )  # fmt: skip
    alice, bob = (login(platform, f"console_{n}", f"{n}-password") for n in ("alice", "bob"))
    task_id = alice.frontend.create_task(
        function_id, {"message": "hello"}, "python", inputs_ownership=[OwnerList("bobs_data", ["console_bob"])]
    )
    bob.frontend.assign_data_to_task(task_id, inputs=[DataMap("bobs_data", encrypted_input(bob))])
    for session in (root, alice, bob):
        session.close()
    return {"task": task_id, "function": function_id}


def sign_in(browser: object, console_url: str, name: str, *, javascript: bool = True) -> object:
    """A new browser context signed in as ``console_<name>``; its page shows the Inbox."""
    context = browser.new_context(ignore_https_errors=True, java_script_enabled=javascript)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{console_url}/")
    page.get_by_label("User ID").fill(f"console_{name}")
    page.get_by_label("Password").fill(f"{name}-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{console_url}/inbox")
    return page


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_two_parties_agree_on_a_task_in_the_browser(
    platform: RunningPlatform, browser: object, console_url: str, parties: dict[str, str]
) -> None:
    task_id = parties["task"]
    sign_in_page = browser.new_context(ignore_https_errors=True).new_page()  # type: ignore[attr-defined]
    sign_in_page.goto(f"{console_url}/sign-in")
    shot(sign_in_page, "sign-in")
    sign_in_page.context.close()

    bob = sign_in(browser, console_url, "bob", javascript=False)  # every page but live updates works without it
    card = bob.get_by_role("region", name=re.compile("agree"))
    playwright_api.expect(card).to_contain_text(task_id)
    playwright_api.expect(card.get_by_label("Function source")).to_contain_text('return "agreed: " + argv[1]')
    playwright_api.expect(card.get_by_label("Arguments")).to_contain_text('"message": "hello"')
    playwright_api.expect(card).to_contain_text("bobs_data")
    playwright_api.expect(card).to_contain_text("console_alice, console_bob")  # who must approve
    shot(bob, "inbox")
    card.get_by_role("button", name="Approve").click()
    bob.wait_for_url(f"{console_url}/inbox")
    playwright_api.expect(bob.get_by_text("Nothing is waiting for your approval.")).to_be_visible()

    alice = sign_in(browser, console_url, "alice")
    alice.get_by_role("region", name=re.compile("agree")).get_by_role("button", name="Approve").click()
    alice.goto(f"{console_url}/tasks/{task_id}")
    alice.get_by_role("button", name="Invoke").click()
    alice.wait_for_url(f"{console_url}/tasks/{task_id}")
    # No reload: the page follows the task over server-sent events until it has finished.
    playwright_api.expect(alice.locator("dl.facts").first).to_contain_text("Finished", timeout=60_000)
    playwright_api.expect(alice.get_by_label("Return value")).to_have_text("agreed: hello")
    steps = alice.get_by_role("region", name="Timeline").inner_text()
    order = ["Created by console_alice", "Approved by console_bob", "Approved by console_alice", "Invoked", "Finished"]
    assert all(step in steps for step in order), steps
    assert [steps.index(step) for step in order] == sorted(steps.index(step) for step in order)  # oldest first
    receipt = alice.get_by_role("region", name="Receipt")
    playwright_api.expect(receipt).to_contain_text("checked by the console")
    playwright_api.expect(receipt).to_contain_text(hashlib.sha256(SOURCE).hexdigest())
    shot(alice, "task")
    # What the page offers to download checks offline against the deployment's trust files alone.
    token = alice.context.request.get(f"{console_url}/tasks/{task_id}/receipt").text().strip()
    manifest = alice.context.request.get(f"{console_url}/tasks/{task_id}/manifest").body()
    verified = Receipt(token, manifest=manifest).verify(Trust.from_state_dir(platform.platform.settings.state_dir))
    assert verified.task_id == task_id and verified.status == "Finished" and verified.manifest is not None
    alice.get_by_role("link", name="Tasks").click()
    playwright_api.expect(alice.get_by_role("link", name=task_id)).to_be_visible()
    shot(alice, "tasks")

    bob.goto(f"{console_url}/tasks/{task_id}")  # every participant reads the result
    playwright_api.expect(bob.get_by_label("Return value")).to_have_text("agreed: hello")


def test_a_data_owner_rejects_a_task_and_its_creator_sees_who(
    platform: RunningPlatform, browser: object, console_url: str, parties: dict[str, str]
) -> None:
    alice, bob = (login(platform, f"console_{n}", f"{n}-password") for n in ("alice", "bob"))
    task_id = alice.frontend.create_task(
        parties["function"], {"message": "not this"}, "python",
        inputs_ownership=[OwnerList("bobs_data", ["console_bob"])],
    )  # fmt: skip
    bob.frontend.assign_data_to_task(task_id, inputs=[DataMap("bobs_data", encrypted_input(bob))])
    page = sign_in(browser, console_url, "bob")
    card = page.get_by_role("region", name=re.compile(task_id))
    playwright_api.expect(card.get_by_label("Arguments")).to_contain_text("not this")
    card.get_by_role("button", name="Reject").click()
    page.wait_for_url(f"{console_url}/inbox")
    playwright_api.expect(page.get_by_role("region", name=re.compile(task_id))).to_have_count(0)
    creator = sign_in(browser, console_url, "alice")
    creator.goto(f"{console_url}/tasks/{task_id}")
    playwright_api.expect(creator.locator("dl.facts").first).to_contain_text("Canceled")
    playwright_api.expect(creator.get_by_text("Task rejected by console_bob")).to_be_visible()
    assert creator.get_by_role("button", name="Invoke").count() == 0
    for session in (alice, bob):
        session.close()


def test_a_non_participant_sees_nothing_of_the_task(browser: object, console_url: str, parties: dict[str, str]) -> None:
    eve = sign_in(browser, console_url, "eve")
    playwright_api.expect(eve.get_by_text("Nothing is waiting for your approval.")).to_be_visible()
    eve.goto(f"{console_url}/tasks")
    playwright_api.expect(eve.get_by_text("No tasks.")).to_be_visible()
    response = eve.goto(f"{console_url}/tasks/{parties['task']}")
    assert response.status in (403, 404)
    text = eve.content()
    assert "agreed" not in text and "hello" not in text and "bobs_data" not in text
    shot(eve, "not-a-participant")
    for part in ("receipt", "manifest"):
        answer = eve.context.request.get(f"{console_url}/tasks/{parties['task']}/{part}")
        assert answer.status in (403, 404) and "hello" not in answer.text()


def test_forms_without_the_pages_token_or_from_another_site_are_refused(
    platform: RunningPlatform, browser: object, console_url: str, people: None
) -> None:
    root = admin(platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")]
    )
    alice = login(platform, "console_alice", "alice-password")
    task_id = alice.frontend.create_task(function_id, {"message": "keep me"}, "builtin")
    page = sign_in(browser, console_url, "alice")
    page.goto(f"{console_url}/tasks/{task_id}")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    requests = page.context.request
    refused = [
        requests.post(f"{console_url}/tasks/{task_id}/cancel", form={}),
        requests.post(f"{console_url}/tasks/{task_id}/cancel", form={"csrf": "forged"}),
        requests.post(
            f"{console_url}/tasks/{task_id}/cancel", form={"csrf": token}, headers={"Origin": "https://evil.example"}
        ),
        requests.post(
            f"{console_url}/tasks/{task_id}/cancel", form={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}
        ),
    ]
    assert [r.status for r in refused] == [403, 403, 403, 403]
    # The page's token without the session cookie it is bound to: sent to sign in, nothing done.
    with httpx.Client(verify=False) as stranger:
        answer = stranger.post(f"{console_url}/tasks/{task_id}/cancel", data={"csrf": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/sign-in")
    assert alice.frontend.get_task(task_id)["status"] == 0  # still Created: nothing was cancelled
    done = requests.post(f"{console_url}/tasks/{task_id}/cancel", form={"csrf": token}, max_redirects=0)
    assert done.status == 303  # the page's own form works
    assert alice.frontend.get_task(task_id)["status"] == 20  # Canceled
    assert page.goto(f"{console_url}/tasks/{task_id}").status == 200  # it never ran: no receipt, and no error
    assert page.get_by_role("region", name="Receipt").count() == 0 and "no receipt" not in page.content()
    for session in (root, alice):
        session.close()


def test_pages_carry_the_security_headers_and_the_session_cookie_is_locked_down(
    browser: object, console_url: str, parties: dict[str, str]
) -> None:
    page = sign_in(browser, console_url, "bob")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["__Host-cloister-session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict" and session["path"] == "/"
    response = page.goto(f"{console_url}/inbox")
    headers = response.headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{console_url}/sign-in")
    assert "__Host-cloister-session" not in {c["name"] for c in page.context.cookies()}
    page.goto(f"{console_url}/inbox")
    assert page.url == f"{console_url}/sign-in"


def test_a_wrong_password_is_told_without_saying_which_part_was_wrong(
    browser: object, console_url: str, people: None
) -> None:
    page = browser.new_context(ignore_https_errors=True).new_page()  # type: ignore[attr-defined]
    page.goto(f"{console_url}/sign-in")
    page.get_by_label("User ID").fill("console_bob")
    page.get_by_label("Password").fill("not-bobs-password")
    page.get_by_role("button", name="Sign in").click()
    playwright_api.expect(page.get_by_role("alert")).to_contain_text("The user ID or password is wrong")
    assert page.url == f"{console_url}/sign-in"
    assert "__Host-cloister-session" not in {c["name"] for c in page.context.cookies()}


def sign_in_from(source: str, console_url: str, user_id: str, password: str) -> httpx.Response:
    """The console's answer to a sign-in posted by a browser whose connections come from ``source``
    (any 127.x.y.z is this machine), with the form's token and cookie as a browser sends them."""
    transport = httpx.HTTPTransport(verify=False, local_address=source)
    with httpx.Client(transport=transport, verify=False) as client:
        form = client.get(f"{console_url}/sign-in")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        fields = {"csrf": token.group(1), "user_id": user_id, "password": password}
        return client.post(f"{console_url}/sign-in", data=fields, headers={"Origin": console_url})


def test_the_platform_sees_each_browsers_address_not_the_consoles(platform: RunningPlatform, console_url: str) -> None:
    for guess in range(FAILURES_PER_ADDRESS):  # unknown ids: no user's own limit is reached
        assert sign_in_from("127.0.0.2", console_url, f"nobody_{guess}", "guess").status_code == 401
    paused = sign_in_from("127.0.0.2", console_url, platform.admin_user, platform.admin_password)
    assert paused.status_code == 429 and "try again" in paused.text
    # Another browser on the same console is not paused with it.
    assert sign_in_from("127.0.0.3", console_url, platform.admin_user, platform.admin_password).status_code == 303
    root = admin(platform)
    guesses = audit_entries(root, "ip:127.0.0.2 AND message:user_login", FAILURES_PER_ADDRESS + 1)
    assert len(guesses) == FAILURES_PER_ADDRESS + 1 and not any(entry["result"] for entry in guesses)
    signed_in = audit_entries(root, "ip:127.0.0.3 AND message:user_login", 1)
    assert [entry["result"] for entry in signed_in] == [True]
    root.close()


def test_no_one_but_the_attested_console_may_name_a_client_address(platform: RunningPlatform) -> None:
    """A client with an attested identity of its own (as ``cloister status`` gets one) claims an
    address: both public endpoints refuse the call, and nothing is done or audited under it."""
    settings = platform.platform.settings
    deployment = deployment_of(settings)
    obtain = obtain_identity(settings, deployment, open_backend("sim", deployment, "status"), "status")
    with concurrent.futures.ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this one
        impostor = thread.submit(asyncio.run, obtain).result()
    link = PlatformLink(
        Trust.from_state_dir(settings.state_dir),
        addresses.resolve(settings, "authentication_api"),
        addresses.resolve(settings, "frontend"),
        lambda: impostor,
    )
    root = admin(platform)
    try:
        with pytest.raises(AuthenticationError, match="failed attestation"):
            link.login(platform.admin_user, platform.admin_password, "192.0.2.44")
        token = root.frontend.metadata["token"]
        with pytest.raises(AuthenticationError, match="failed attestation"):
            link.as_user(platform.admin_user, token, "192.0.2.44").frontend("ListFunctions", ListFunctionsRequest())
        assert audit_entries(root, "ip:192.0.2.44", 1) == []
    finally:
        link.close()
        root.close()


def test_a_function_registered_with_the_form_shows_its_source(browser: object, console_url: str, people: None) -> None:
    refused = sign_in(browser, console_url, "alice")  # a data owner may not register functions
    refused.goto(f"{console_url}/functions")
    form = refused.get_by_role("form", name="Register a function")
    form.get_by_label("Executor").select_option("builtin")
    form.get_by_label("Name", exact=True).fill("builtin-echo")
    form.get_by_role("button", name="Register function").click()
    playwright_api.expect(refused.get_by_role("alert")).to_be_visible()
    assert "/functions/function-" not in refused.url

    page = sign_in(browser, console_url, "fiona")
    page.get_by_role("link", name="Functions").click()
    form = page.get_by_role("form", name="Register a function")
    form.get_by_label("Executor").select_option("python")
    form.get_by_label("Name", exact=True).fill("summarise")
    form.get_by_role("button", name="Register function").click()  # no code chosen: refused, form kept
    playwright_api.expect(page.get_by_role("alert")).to_contain_text("a python function needs its code")
    playwright_api.expect(form.get_by_label("Name", exact=True)).to_have_value("summarise")

    source = b"def entrypoint(argv):\n    return 'summary of ' + argv[1]\n"
    form.get_by_label("Description").fill("Summarise a column")
    form.get_by_label("Code (Python source or WebAssembly module)").set_input_files(
        files=[{"name": "summarise.py", "mimeType": "text/x-python", "buffer": source}]
    )
    form.get_by_label("Arguments (comma-separated)").fill("column, format")
    form.get_by_role("button", name="Register function").click()
    page.wait_for_url(re.compile(r"/functions/function-"))
    playwright_api.expect(page.get_by_label("Function source")).to_contain_text("'summary of ' + argv[1]")
    playwright_api.expect(page.locator("dl.facts")).to_contain_text("column, format")
    page.get_by_role("link", name="Functions").click()
    playwright_api.expect(page.get_by_role("link", name="summarise")).to_be_visible()
    shot(page, "functions")


def test_files_registered_with_the_form_take_their_key_from_a_file(
    platform: RunningPlatform, browser: object, console_url: str, people: None
) -> None:
    page = sign_in(browser, console_url, "bob")
    page.get_by_role("link", name="Files").click()
    playwright_api.expect(page.get_by_text("never leaves your browser in clear", exact=False)).to_be_visible()
    key, iv = bytes(range(16)), bytes(range(12))
    sealed = AESGCM(key).encrypt(iv, b"bob's rows", b"")
    form = page.get_by_role("form", name="Register an input file")
    form.get_by_label("URL", exact=True).fill("data:text/plain;base64,AAAA")
    form.get_by_label("Key file (the key's bytes, raw or in hexadecimal)").set_input_files(
        files=[{"name": "bob.key", "mimeType": "application/octet-stream", "buffer": key}]
    )
    form.get_by_label("IV (hexadecimal)").fill(iv.hex())
    form.get_by_label("cmac (hexadecimal: the file's authentication tag)").fill(sealed[-16:].hex())
    form.get_by_role("button", name="Register input").click()
    page.wait_for_url(re.compile(r"/files/input-"), timeout=10_000)
    facts = page.locator("dl.facts")
    playwright_api.expect(facts).to_contain_text("console_bob")
    playwright_api.expect(facts).to_contain_text(sealed[-16:].hex())
    input_id = page.url.rsplit("/", 1)[1]
    shot(page, "file")

    page.goto(f"{console_url}/files")
    form = page.get_by_role("form", name="Register an output file")
    form.get_by_label("URL", exact=True).fill("https://example.org/out")
    form.get_by_label("Key file (the key's bytes, raw or in hexadecimal)").set_input_files(
        files=[{"name": "out.key", "mimeType": "text/plain", "buffer": (key.hex() + "\n").encode()}]
    )
    form.get_by_role("button", name="Register output").click()
    page.wait_for_url(re.compile(r"/files/output-"))
    playwright_api.expect(page.locator("dl.facts")).to_contain_text("not known yet")

    page.goto(f"{console_url}/files")
    form = page.get_by_role("form", name="Register an input file")
    form.get_by_label("URL", exact=True).fill("data:,x")
    form.get_by_label("Key file (the key's bytes, raw or in hexadecimal)").set_input_files(
        files=[{"name": "short.key", "mimeType": "application/octet-stream", "buffer": b"short"}]
    )
    form.get_by_label("cmac (hexadecimal: the file's authentication tag)").fill("00" * 16)
    form.get_by_role("button", name="Register input").click()
    playwright_api.expect(page.get_by_role("alert")).to_contain_text("16 or 32 bytes")
    shot(page, "files")

    eve = sign_in(browser, console_url, "eve")  # another user looks the input up: refused, nothing shown
    response = eve.goto(f"{console_url}/files/{input_id}")
    assert response.status in (403, 404) and sealed[-16:].hex() not in eve.content()


def test_the_audit_view_is_for_administrators(
    platform: RunningPlatform, browser: object, console_url: str, people: None
) -> None:
    context = browser.new_context(ignore_https_errors=True)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{console_url}/sign-in")
    page.get_by_label("User ID").fill(platform.admin_user)
    page.get_by_label("Password").fill(platform.admin_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{console_url}/inbox")
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Query").fill("message:register_function")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    playwright_api.expect(rows.first).to_contain_text("register_function")
    assert all("register_function" in text for text in rows.all_inner_texts())
    shot(page, "audit")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export all matches").click()
    exported = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    assert exported and all("register_function" in entry["message"] for entry in exported)
    assert {"seq", "time", "ip", "user", "message", "result"} <= set(exported[0])

    eve = sign_in(browser, console_url, "eve")
    response = eve.goto(f"{console_url}/audit")
    assert response.status == 403
    assert "register_function" not in eve.content()
    assert eve.context.request.get(f"{console_url}/audit/export").status == 403


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(
    platform: RunningPlatform, console_url: str
) -> None:
    limit = platform.platform.settings.rpc.max_message_bytes
    with httpx.Client(verify=False) as client:
        answer = client.post(f"{console_url}/functions", content=b"x" * (limit + 128 * 1024))
        assert answer.status_code == 413

        def chunks() -> Iterator[bytes]:  # a form that never ends, sent without a length
            for field in range(limit // (60 * 1024) + 20):  # each field under the 64 KiB a field may have
                yield f"f{field}=".encode() + b"y" * (60 * 1024) + b"&"

        urlencoded = {"content-type": "application/x-www-form-urlencoded"}
        answer = client.post(f"{console_url}/sign-in", content=chunks(), headers=urlencoded)
        assert answer.status_code == 413
        # The sign-in form takes no file: one is refused when its part begins, not read.
        upload = {"content-type": "multipart/form-data; boundary=cut"}
        start = b'--cut\r\nContent-Disposition: form-data; name="password"; filename="big"\r\n\r\n' + b"y" * 1024
        answer = client.post(f"{console_url}/sign-in", content=start + b"\r\n--cut--\r\n", headers=upload)
        assert answer.status_code == 400


def test_a_task_page_follows_the_task_without_reloading(
    platform: RunningPlatform, browser: object, console_url: str, people: None
) -> None:
    root = admin(platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")], inputs=[FunctionInput("part")]
    )
    alice, bob = (login(platform, f"console_{n}", f"{n}-password") for n in ("alice", "bob"))
    task_id = alice.frontend.create_task(
        function_id, {"message": "live\u202e"}, "builtin", inputs_ownership=[OwnerList("part", ["console_bob"])]
    )
    page = sign_in(browser, console_url, "alice")
    page.goto(f"{console_url}/tasks/{task_id}")
    # A right-to-left override in the arguments is shown, not obeyed.
    playwright_api.expect(page.get_by_label("Arguments").locator("mark.hidden-char")).to_have_text("U+202E")
    facts = page.locator("dl.facts").first
    playwright_api.expect(facts).to_contain_text("nobody yet")
    opened = page.url

    # Bob acts elsewhere; Alice's page is not reloaded.
    bob.frontend.assign_data_to_task(task_id, inputs=[DataMap("part", encrypted_input(bob))])
    playwright_api.expect(page.locator("dl.facts").first).to_contain_text("DataAssigned", timeout=15_000)
    bob.frontend.approve_task(task_id)
    playwright_api.expect(page.locator("dl.facts").first).not_to_contain_text("nobody yet", timeout=15_000)
    playwright_api.expect(page.locator("dl.facts").first).to_contain_text("console_bob")
    alice.frontend.cancel_task(task_id)
    playwright_api.expect(page.locator("dl.facts").first).to_contain_text("Canceled", timeout=15_000)
    playwright_api.expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    assert page.url == opened
    for session in (root, alice, bob):
        session.close()


def test_one_user_cannot_hold_every_live_stream(
    platform: RunningPlatform, browser: object, console_url: str, parties: dict[str, str]
) -> None:
    root = admin(platform)
    function_id = root.frontend.register_function(
        "builtin-echo", "echo", "builtin", arguments=[FunctionArgument("message")], inputs=[FunctionInput("part")]
    )
    eve = login(platform, "console_eve", "eve-password")  # a task that never ends: Bob never assigns his part
    task_id = eve.frontend.create_task(
        function_id, {"message": "hold"}, "builtin", inputs_ownership=[OwnerList("part", ["console_bob"])]
    )
    cookies = sign_in(browser, console_url, "eve").context.cookies()  # type: ignore[attr-defined]
    jar = {c["name"]: c["value"] for c in cookies}
    with httpx.Client(verify=False, cookies=jar, timeout=30) as client, contextlib.ExitStack() as streams:
        for _ in range(MAX_EVENT_STREAMS_PER_USER):
            opened = streams.enter_context(client.stream("GET", f"{console_url}/tasks/{task_id}/events"))
            assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/event-stream")
        refused = client.get(f"{console_url}/tasks/{task_id}/events")
        assert refused.status_code == 503
    bob = sign_in(browser, console_url, "bob")  # another user still follows a task live
    bobs = {c["name"]: c["value"] for c in bob.context.cookies()}  # type: ignore[attr-defined]
    with (
        httpx.Client(verify=False, cookies=bobs) as client,
        client.stream("GET", f"{console_url}/tasks/{parties['task']}/events") as live,
    ):
        assert live.status_code == 200
    for session in (root, eve):
        session.close()


def test_an_approver_sees_the_digest_of_a_private_function_they_may_not_read(
    platform: RunningPlatform, browser: object, console_url: str, people: None
) -> None:
    root = admin(platform)
    code = b"def entrypoint(argv):\n    return 'private ' + argv[1]\n"
    function_id = root.frontend.register_function(
        "private", "kept private", "python", public=False, payload=code, user_allowlist=["org_alice"],
        arguments=[FunctionArgument("message")], inputs=[FunctionInput("part")],
    )  # fmt: skip
    alice, bob, eve = (login(platform, f"console_{n}", f"{n}-password") for n in ("alice", "bob", "eve"))
    task_id = alice.frontend.create_task(
        function_id, {"message": "x"}, "python", inputs_ownership=[OwnerList("part", ["console_bob"])]
    )
    digest = hashlib.sha256(code).hexdigest()
    with Client.connect_local(platform.state_dir, credentials=Credentials("console_bob", "bob-password")) as client:
        terms = client.tasks.get(task_id).terms()  # before anyone approved or invoked
        assert terms is not None and terms.payload_sha256 == digest and terms.approvals == {}
        assert set(terms.participants) == {platform.admin_user, "console_alice", "console_bob"}
        assert terms.arguments == {"message": "x"}
    with (
        Client.connect_local(platform.state_dir, credentials=Credentials("console_eve", "eve-password")) as client,
        pytest.raises(AccessDeniedError),
    ):
        client.tasks.get(task_id).terms()

    page = sign_in(browser, console_url, "bob")
    card = page.get_by_role("region", name=re.compile(task_id))
    playwright_api.expect(card).to_contain_text(digest)
    playwright_api.expect(card).to_contain_text("its code is not shown to you")
    assert "private ' + argv[1]" not in page.content()
    for session in (root, alice, bob, eve):
        session.close()
