"""The admin page in a real headless Chromium against the real API.

Each test serves :func:`fuwad.http.app.make_app` on a random loopback port
over its own database, makes real API tokens (with ``fuwactl token`` where
the README tells people to), and drives the page with
Playwright (Debian's ``chromium``, installed by ``scripts/install-browser``;
Playwright never downloads a browser here).  One browser serves the whole
session; each test gets a fresh context, so no token or storage leaks from
one test to the next.  Every test also fails on a script error or a
Content Security Policy violation in the page.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    async_playwright,
    expect,
)

from fuwad import QueueManager, tokens
from fuwad.config import Config
from fuwad.control.client import AsyncControlClient
from fuwad.errors import FuwadError
from fuwad.http.app import make_app
from fuwad.tokens import Role
from tests.conftest import wait_until
from tests.system.conftest import Daemon, command

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 15_000
PAGE_SIZE = 25  # jobs.js PAGE_SIZE
DOCS = Path(__file__).resolve().parents[2] / "docs"

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing; run scripts/install-browser")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def site(config: Config, dsn: str) -> AsyncIterator[str]:
    """The real app, API and page, on a random loopback port."""
    runner = web.AppRunner(make_app(config, dsn))
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Watch:
    """What the page did that a test must see: errors and dialogs."""

    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def _console(watch: Watch, message: ConsoleMessage) -> None:
    # A refused request (401, 404, 503) is logged by the browser itself;
    # the page reports those in its own way.  Anything else is a fault.
    if message.type == "error" and "Failed to load resource" not in (
            message.text):
        watch.problems.append(f"console: {message.text}")


def _dialog(watch: Watch, dialog: Dialog) -> None:
    watch.dialogs.append(f"{dialog.type}: {dialog.message}")
    asyncio.ensure_future(dialog.dismiss())


@pytest.fixture
async def watched(browser: Browser) -> AsyncIterator[tuple[Page, Watch]]:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-GB",
        timezone_id="UTC",
    )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = Watch()
    page.on("pageerror", lambda exc: watch.problems.append(f"error: {exc}"))
    page.on("console", lambda message: _console(watch, message))
    page.on("dialog", lambda dialog: _dialog(watch, dialog))
    try:
        yield page, watch
    finally:
        await context.close()
    assert watch.problems == []
    assert watch.dialogs == []


@pytest.fixture
def page(watched: tuple[Page, Watch]) -> Page:
    return watched[0]


async def make_token(manager: QueueManager, role: str) -> str:
    token, _ = await tokens.create(
        manager.pool, f"{role}-{uuid.uuid4().hex[:8]}", Role(role))
    return token


async def fuwactl(dsn: str, *args: str) -> str:
    """Run the real fuwactl on ``dsn``; return what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUWAD_")}
    env["FUWAD_DSN"] = dsn
    process = await asyncio.create_subprocess_exec(
        command("fuwactl"), *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def sign_in(page: Page, site: str, token: str) -> None:
    await page.goto(f"{site}/admin/queue")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#app")).to_be_visible()


async def set_processing(manager: QueueManager, job_id: int) -> None:
    await manager.pool.execute(
        "UPDATE queue_jobs SET status = 'processing', attempts = 1, "
        "started_at = now(), worker_id = 'test-worker', leased_at = now() "
        "WHERE id = $1", job_id)


async def age_finished(manager: QueueManager, job_ids: list[int],
                       seconds: int) -> None:
    await manager.pool.execute(
        "UPDATE queue_jobs SET completed_at = completed_at - "
        "make_interval(secs => $2), failed_at = failed_at - "
        "make_interval(secs => $2) WHERE id = ANY($1::bigint[])",
        job_ids, seconds)


async def status_of(manager: QueueManager, job_id: int) -> str | None:
    value = await manager.pool.fetchval(
        "SELECT status FROM queue_jobs WHERE id = $1", job_id)
    return None if value is None else str(value)


async def row_ids(page: Page) -> list[int]:
    keys = await page.locator("#jobs-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.key)")
    return [int(k) for k in keys]


async def open_job(page: Page, job_id: int) -> None:
    await page.get_by_label("Job id").fill(str(job_id))
    await page.get_by_role("button", name="Open", exact=True).click()
    await expect(page.locator("#job-dialog")).to_be_visible()
    await expect(page.locator("#job-title-id")).to_have_text(f"#{job_id}")


async def confirm(page: Page, verb: str) -> None:
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name=verb, exact=True).click()
    await expect(dialog).to_be_hidden()


# Signing in and out ----------------------------------------------------------


async def test_sign_in_keeps_the_token_in_the_tab_and_sign_out_forgets_it(
    page: Page, site: str, dsn: str,
) -> None:
    made = await fuwactl(dsn, "token", "create", "--name", "alice",
                         "--role", "viewer", "--json")
    token = json.loads(made)["token"]
    await page.goto(f"{site}/admin/queue")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # A wrong token is refused with a message, and nothing is kept.
    await page.get_by_label("API token").fill("fwd_not-a-real-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signin-message")).to_contain_text(
        "not accepted")
    assert await page.evaluate("sessionStorage.length") == 0

    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who-role")).to_have_text("viewer")
    assert await page.evaluate(
        "sessionStorage.getItem('fuwad.token')") == token
    assert await page.evaluate("document.cookie") == ""
    assert await page.evaluate("localStorage.length") == 0

    # A reload keeps the session; the tab's storage is where it lives.
    await page.reload()
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#who-role")).to_have_text("viewer")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.locator("#signin-message")).to_have_text("Signed out.")
    await expect(page.locator("#app")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    await expect(page.get_by_label("API token")).to_be_focused()


async def test_revoked_token_returns_to_sign_in_with_a_message(
    page: Page, site: str, manager: QueueManager, dsn: str,
) -> None:
    token, info = await tokens.create(manager.pool, "leaving", Role.ADMIN)
    await sign_in(page, site, token)
    await expect(page.locator("#count-total")).to_have_text("0")

    await fuwactl(dsn, "token", "revoke", info.name)

    # The next refresh gets a 401 and the page signs itself out, saying
    # why in words a person signed in with that token understands.
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.locator("#signin-message")).to_have_text(
        "Your token was revoked or has expired; sign in with a new one.")
    assert await page.evaluate("sessionStorage.length") == 0
    await expect(page.locator("#count-total")).to_have_text("–")


# The overview -------------------------------------------------------------


async def test_overview_numbers_equal_the_database_and_follow_it(
    watched: tuple[Page, Watch], site: str, manager: QueueManager,
) -> None:
    page, _ = watched
    ids = [await manager.push(f"job {n}", "app.jobs.Report", {"n": n})
           for n in range(9)]
    await manager.push("later", "app.jobs.Report", delay=3600)
    for job_id in ids[:3]:
        await manager.mark_completed(job_id)
    await manager.mark_failed(ids[3], "boom")
    await manager.cancel(ids[4])
    await set_processing(manager, ids[5])
    await sign_in(page, site, await make_token(manager, "viewer"))

    stats = await manager.get_stats()
    ready, _ = await manager.ready()
    assert (stats["pending"], stats["completed"], ready) == (4, 3, 3)
    for status in ("pending", "processing", "completed", "failed",
                   "cancelled", "total"):
        await expect(page.locator(f"#count-{status}")).to_have_text(
            str(stats[status]))
    await expect(page.locator("#count-ready")).to_have_text(str(ready))
    await expect(page.locator("#oldest-ready")).to_have_text(
        re.compile(r"^\d+ (s|min)"))
    await expect(page.locator("#chart-summary")).to_contain_text(
        "Last hour: 3 completed, 1 failed.")
    assert await page.locator("#chart .minute").count() == 60
    # The tabs carry the same counts.
    await expect(page.get_by_role("tab", name=re.compile("^Failed"))
                 ).to_have_text("Failed 1")

    # Without a reload the page follows the database, keeping the rows it
    # already shows (no flicker, no lost focus) and the reader's scroll.
    first_row = page.locator("#jobs-table tbody tr").first
    await first_row.evaluate("row => { row.kept = true; }")
    await page.locator("#jobs-table tbody tr").nth(3).locator(
        "button").focus()
    await page.evaluate("window.scrollTo(0, 300)")
    scrolled = await page.evaluate("window.scrollY")
    await manager.mark_failed(ids[6], "boom again")
    await expect(page.locator("#count-failed")).to_have_text("2")
    await expect(page.locator("#chart-summary")).to_contain_text(
        "3 completed, 2 failed")
    assert await first_row.evaluate("row => row.kept === true")
    assert await page.evaluate("window.scrollY") == scrolled
    focused = await page.evaluate(
        "document.activeElement.closest('tr')?.dataset.key")
    assert focused == str((await row_ids(page))[3])


async def test_refresh_pauses_while_the_tab_is_hidden(
    page: Page, site: str, manager: QueueManager,
) -> None:
    # The page's timers run on a clock the test moves, and its calls to
    # fetch are counted as they are made, so "nothing happens while
    # hidden" is shown without waiting.
    await page.add_init_script(COUNT_FETCHES)
    await page.clock.install()
    await sign_in(page, site, await make_token(manager, "viewer"))
    await expect(page.locator("#live")).to_have_text("live")
    before = await fetches(page)
    await page.clock.run_for(2500)
    assert await fetches(page) > before
    await expect(page.locator("#live")).to_have_text("live")

    await set_hidden(page, True)
    await expect(page.locator("#live")).to_have_text("paused")
    # A refresh sent just before the tab hid may still be on its way; let
    # it land first, so that only what happens while hidden is judged.
    await page.wait_for_function("window.__inflight === 0")
    await manager.push("while hidden", "app.jobs.Report")
    before = await fetches(page)
    await page.clock.run_for(60_000)
    assert await fetches(page) == before
    await expect(page.locator("#count-total")).to_have_text("0")

    await set_hidden(page, False)
    await expect(page.locator("#count-total")).to_have_text("1")
    await expect(page.locator("#live")).to_have_text("live")


COUNT_FETCHES = """
window.__fetches = 0;
window.__inflight = 0;
const realFetch = window.fetch;
window.fetch = (...args) => {
    window.__fetches += 1;
    window.__inflight += 1;
    return realFetch.apply(window, args)
        .finally(() => { window.__inflight -= 1; });
};
"""


async def fetches(page: Page) -> int:
    return int(await page.evaluate("window.__fetches"))


async def set_hidden(page: Page, hidden: bool) -> None:
    """Tell the page its tab is hidden or shown, as a browser would."""
    await page.evaluate("""hidden => {
        Object.defineProperty(document, 'hidden',
            {value: hidden, configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""", hidden)


# Jobs ---------------------------------------------------------------------


async def test_jobs_filter_by_status_queue_and_class_and_find_by_id(
    page: Page, site: str, manager: QueueManager,
) -> None:
    ids = [await manager.push(f"job {n}", f"app.jobs.Kind{n % 3}",
                              {"n": n}, queue="mail" if n % 2 else "reports")
           for n in range(12)]
    for job_id in ids[:4]:
        await manager.mark_failed(job_id, "boom")
    await sign_in(page, site, await make_token(manager, "viewer"))
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(12)
    assert await row_ids(page) == sorted(ids, reverse=True)

    # Status tabs, worked from the keyboard as a tab list is.
    all_tab = page.get_by_role("tab", name=re.compile("^All"))
    await all_tab.focus()
    for _ in range(4):
        await page.keyboard.press("ArrowRight")
    failed_tab = page.get_by_role("tab", name=re.compile("^Failed"))
    await expect(failed_tab).to_be_focused()
    await expect(failed_tab).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(4)
    assert await row_ids(page) == sorted(ids[:4], reverse=True)
    await expect(page.locator("#jobs-table tbody .pill")).to_have_text(
        ["failed"] * 4)

    # Queue and class filters, on top of the status.
    await page.get_by_label("Queue").fill("mail")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(2)
    assert await row_ids(page) == [ids[3], ids[1]]
    await all_tab.click()
    mail = [i for n, i in enumerate(ids) if n % 2]
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(
        len(mail))
    await page.get_by_label("Class").fill("app.jobs.Kind0")
    await page.get_by_label("Class").press("Enter")
    wanted = [i for n, i in enumerate(ids) if n % 2 and n % 3 == 0]
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(
        len(wanted))
    assert await row_ids(page) == sorted(wanted, reverse=True)
    await page.get_by_role("button", name="Clear").click()
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(12)

    # Each row: id, name, class, queue, status, priority, attempts of max
    # (the server's default when the job has none of its own), and times
    # relative with the exact time on hover.
    row = page.locator(f"#jobs-table tbody tr[data-key='{ids[5]}']")
    await expect(row.locator("th, td")).to_have_text([
        f"#{ids[5]}", "job 5", "app.jobs.Kind2", "mail", "pending",
        "5 normal", "0 of 3", re.compile("ago|just now"),
        re.compile("^due "),
    ])
    await expect(row.locator("td.attempts")).to_have_attribute(
        "title", re.compile(r"^3 is the default \(\[queue\] "
                            r"worker_max_attempts\)"))
    created = await manager.get_job(ids[5])
    title = await row.locator("time").first.get_attribute("title")
    assert title == created.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")

    # Find by id opens the job; a missing id says so.
    await open_job(page, ids[2])
    fields = page.locator("#job-fields")
    await expect(fields.locator("#job-job-name-value")).to_have_text("job 2")
    await expect(fields.locator("#job-status-value")).to_have_text("failed")
    await expect(fields.locator("#job-max-attempts-value")).to_have_text(
        re.compile(r"^3 \(the default"))
    await expect(page.locator("#job-data")).to_have_text(
        '{\n  "n": 2\n}')
    await expect(page.locator("#job-error")).to_have_text("boom")
    await page.keyboard.press("Escape")
    await expect(page.locator("#job-dialog")).to_be_hidden()
    await expect(page.get_by_label("Job id")).to_be_focused()
    await page.get_by_label("Job id").fill(str(ids[-1] + 1000))
    await page.get_by_label("Job id").press("Enter")
    await expect(page.locator("#alerts")).to_contain_text(
        f"job {ids[-1] + 1000} does not exist")
    await expect(page.locator("#job-dialog")).to_be_hidden()

    # A row opens from the keyboard, and focus comes back to it.
    button = page.get_by_role("button", name=f"Open job {ids[7]}")
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#job-title-id")).to_have_text(f"#{ids[7]}")
    await expect(page.locator("#job-close")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#job-dialog")).to_be_hidden()
    await expect(button).to_be_focused()


async def test_times_read_in_the_readers_zone_with_its_offset(
    browser: Browser, site: str, manager: QueueManager,
) -> None:
    job_id = await manager.push("zoned", "app.jobs.Report")
    await manager.mark_completed(job_id)
    job = await manager.get_job(job_id)
    assert job.completed_at is not None
    exact = job.completed_at.astimezone(ZoneInfo("Asia/Kolkata")).strftime(
        "%Y-%m-%d %H:%M:%S UTC+5:30")
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-GB",
        timezone_id="Asia/Kolkata",
    )
    problems: list[str] = []
    try:
        page = await context.new_page()
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        await sign_in(page, site, await make_token(manager, "viewer"))
        row = page.locator(f"#jobs-table tbody tr[data-key='{job_id}']")
        await expect(row.locator("time").nth(1)).to_have_attribute(
            "title", exact)
        await expect(row.locator("td.event")).to_have_text(
            re.compile(r"^completed (just now|\d+ s ago)$"))
        await open_job(page, job_id)
        await expect(page.locator("#job-completed-at-value")).to_have_text(
            re.compile(rf"^{re.escape(exact)} \((just now|\d+ s ago)\)$"))
    finally:
        await context.close()
    assert problems == []


async def test_pages_stay_put_while_new_jobs_arrive(
    page: Page, site: str, manager: QueueManager,
) -> None:
    ids = [await manager.push(f"job {n}", "app.jobs.Report")
           for n in range(2 * PAGE_SIZE + 5)]
    newest_first = sorted(ids, reverse=True)
    await sign_in(page, site, await make_token(manager, "viewer"))
    await expect(page.locator("#page-info")).to_have_text(
        "Page 1 of 3 · 55 jobs")
    assert await row_ids(page) == newest_first[:PAGE_SIZE]
    await expect(page.get_by_role("button", name="Previous")).to_be_disabled()

    await page.get_by_role("button", name="Next").click()
    await expect(page.locator("#page-info")).to_have_text(
        f"Page 2 of 3 · 55 jobs up to #{newest_first[0]}")
    second = newest_first[PAGE_SIZE:2 * PAGE_SIZE]
    assert await row_ids(page) == second

    # Jobs pushed meanwhile do not shift the page being read.
    for n in range(7):
        await manager.push(f"new {n}", "app.jobs.Report")
    await expect(page.get_by_role("tab", name=re.compile("^All"))
                 ).to_have_text("All 62")
    await expect(page.locator("#page-info")).to_have_text(
        f"Page 2 of 3 · 55 jobs up to #{newest_first[0]}")
    assert await row_ids(page) == second

    await page.get_by_role("button", name="Next").click()
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(5)
    assert await row_ids(page) == newest_first[2 * PAGE_SIZE:]
    await expect(page.get_by_role("button", name="Next")).to_be_disabled()

    # Back to the newest, which is live again.
    await page.get_by_role("button", name="Newest").click()
    await expect(page.locator("#page-info")).to_have_text(
        "Page 1 of 3 · 62 jobs")
    latest = await manager.list_jobs(limit=PAGE_SIZE)
    assert await row_ids(page) == [job.id for job in latest[0]]


# Actions ------------------------------------------------------------------


async def test_retry_cancel_delete_and_cleanup_change_the_database(
    page: Page, site: str, manager: QueueManager,
) -> None:
    failed = await manager.push("flaky", "app.jobs.Flaky", {"try": 1})
    await manager.mark_failed(failed, "ValueError: flaky")
    pending = await manager.push("waiting", "app.jobs.Report")
    done = await manager.push("done", "app.jobs.Report")
    await manager.mark_completed(done)
    old = [await manager.push(f"old {n}", "app.jobs.Report")
           for n in range(3)]
    await manager.mark_completed(old[0])
    await manager.mark_completed(old[1])
    await manager.mark_failed(old[2], "long ago")
    await age_finished(manager, old, 8 * 86400)
    await sign_in(page, site, await make_token(manager, "admin"))

    # Retry a failed job after a delay.
    await open_job(page, failed)
    await page.get_by_label("Delay in seconds").fill("30")
    await page.get_by_role("button", name="Retry").click()
    await expect(page.locator("#confirm-text")).to_contain_text("in 30 s")
    await confirm(page, "Retry")
    await expect(page.locator("#toasts")).to_contain_text(
        f"Job #{failed} will be retried in 30 s.")
    assert await status_of(manager, failed) == "pending"
    assert await manager.pool.fetchval(
        "SELECT available_at > now() + interval '20 s' FROM queue_jobs "
        "WHERE id = $1", failed)
    await expect(page.locator("#job-status-value")).to_have_text("pending")
    await expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    await page.get_by_role("button", name="Close").click()

    # Cancel a pending job.
    await open_job(page, pending)
    await page.get_by_role("button", name="Cancel job").click()
    await confirm(page, "Cancel job")
    await expect(page.locator("#toasts")).to_contain_text(
        f"Job #{pending} cancelled.")
    assert await status_of(manager, pending) == "cancelled"
    await expect(page.locator("#job-status-value")).to_have_text(
        "cancelled")
    await page.get_by_role("button", name="Close").click()

    # Delete asks first; going back deletes nothing.
    await open_job(page, done)
    await page.get_by_role("button", name="Delete").click()
    await expect(page.locator("#confirm-title")).to_have_text(
        f"Delete job #{done}?")
    await expect(page.get_by_role("button", name="Go back")).to_be_focused()
    await confirm(page, "Go back")
    assert await status_of(manager, done) == "completed"
    await page.get_by_role("button", name="Delete").click()
    await confirm(page, "Delete")
    await expect(page.locator("#toasts")).to_contain_text(
        f"Job #{done} deleted.")
    await expect(page.locator("#job-dialog")).to_be_hidden()
    assert await status_of(manager, done) is None
    await expect(page.locator(f"#jobs-table tr[data-key='{done}']")
                 ).to_have_count(0)

    # Cleanup removes the finished jobs past their time to live, and
    # says how many.
    before = await manager.get_stats()
    await page.get_by_role("button", name="Clean up finished jobs").click()
    await confirm(page, "Clean up")
    await expect(page.locator("#toasts")).to_contain_text(
        "Cleanup removed 3 finished jobs.")
    assert [await status_of(manager, i) for i in old] == [None] * 3
    after = await manager.get_stats()
    assert after["total"] == before["total"] - 3
    await expect(page.locator("#count-total")).to_have_text(
        str(after["total"]))


async def test_job_values_are_shown_as_text_and_never_run(
    watched: tuple[Page, Watch], site: str, manager: QueueManager,
) -> None:
    page, watch = watched
    name = '<img src=x onerror="window.__pwned=1">'
    job_class = "<script>window.__pwned=2</script>"
    queue = "<b>q</b>"
    data = {"html": '<img src=x onerror="window.__pwned=3">',
            "script": "<script>window.__pwned=4</script>",
            "</pre><pre>": "<svg onload=window.__pwned=5>"}
    error = ('Traceback (most recent call last):\n'
             '  File "<script>alert(6)</script>", line 1\n'
             '<img src=x onerror="window.__pwned=6">')
    job_id = await manager.pool.fetchval(
        "INSERT INTO queue_jobs (job_name, job_class, job_data, queue, "
        "status, attempts, max_attempts, failed_at, last_error, worker_id) "
        "VALUES ($1, $2, $3::jsonb, $4, 'failed', 3, 3, now(), $5, $6) "
        "RETURNING id",
        name, job_class, data, queue, error,
        "<img src=x onerror=alert(7)>")
    await sign_in(page, site, await make_token(manager, "admin"))

    row = page.locator(f"#jobs-table tbody tr[data-key='{job_id}']")
    await expect(row.locator("td").nth(0)).to_have_text(name)
    await expect(row.locator("td").nth(1)).to_have_text(job_class)
    await expect(row.locator("td").nth(2)).to_have_text(queue)
    await page.get_by_label("Queue").fill(queue)
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(1)

    await open_job(page, job_id)
    stored = (await manager.get_job(job_id)).job_data
    assert stored == data
    await expect(page.locator("#job-data")).to_have_text(
        json.dumps(stored, indent=2, ensure_ascii=False))
    await expect(page.locator("#job-error")).to_have_text(error)
    await expect(page.locator("#job-job-name-value")).to_have_text(name)
    await expect(page.locator("#job-worker-id-value")).to_have_text(
        "<img src=x onerror=alert(7)>")

    # Nothing became markup, nothing ran, no dialog opened.
    found = await page.evaluate("""() => document.querySelectorAll(
        '#app img, #app script, #app svg:not(#chart), #app b,'
        + ' #job-dialog img, #job-dialog script, #job-dialog svg').length""")
    assert found == 0
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert watch.dialogs == []


# Roles --------------------------------------------------------------------


ACTIONS = ["Retry", "Cancel job", "Delete", "Clean up finished jobs",
           "Start monitor", "Stop monitor"]


async def visible_actions(page: Page) -> list[str]:
    shown = []
    for name in ACTIONS:
        if await page.get_by_role("button", name=name,
                                  exact=True).count():
            shown.append(name)
    return shown


async def test_viewer_sees_no_action_buttons(
    page: Page, site: str, manager: QueueManager,
) -> None:
    failed = await manager.push("flaky", "app.jobs.Flaky")
    await manager.mark_failed(failed, "boom")
    pending = await manager.push("waiting", "app.jobs.Report")
    await sign_in(page, site, await make_token(manager, "viewer"))
    await expect(page.locator("#count-total")).to_have_text("2")
    assert await visible_actions(page) == []
    for job_id in (failed, pending):
        await open_job(page, job_id)
        await expect(page.locator("#job-data")).to_have_text("{}")
        assert await visible_actions(page) == []
        await expect(page.locator("#job-actions")).to_be_hidden()
        await page.keyboard.press("Escape")


async def test_operator_retries_and_cancels_but_never_sees_delete_or_cleanup(
    page: Page, site: str, manager: QueueManager,
) -> None:
    failed = await manager.push("flaky", "app.jobs.Flaky")
    await manager.mark_failed(failed, "boom")
    pending = await manager.push("waiting", "app.jobs.Report")
    await sign_in(page, site, await make_token(manager, "operator"))
    await expect(page.locator("#count-total")).to_have_text("2")
    assert await visible_actions(page) == []

    await open_job(page, failed)
    assert await visible_actions(page) == ["Retry"]
    await page.keyboard.press("Escape")
    await open_job(page, pending)
    assert await visible_actions(page) == ["Cancel job"]
    await page.get_by_role("button", name="Cancel job").click()
    await confirm(page, "Cancel job")
    await expect(page.locator("#job-status-value")).to_have_text(
        "cancelled")
    assert await status_of(manager, pending) == "cancelled"


async def test_refused_role_says_which_role_the_action_needs(
    page: Page, site: str, manager: QueueManager,
) -> None:
    job_id = await manager.push("keep me", "app.jobs.Report")
    token, info = await tokens.create(manager.pool, "demoted", Role.ADMIN)
    await sign_in(page, site, token)
    await open_job(page, job_id)
    # The token loses its role while the page still shows admin buttons.
    await manager.pool.execute(
        "UPDATE queue_api_tokens SET role = 'viewer' WHERE name = $1",
        info.name)
    await page.get_by_role("button", name="Delete").click()
    await confirm(page, "Delete")
    await expect(page.locator("#alerts")).to_contain_text(
        f"Deleting job #{job_id} needs the admin role")
    assert await status_of(manager, job_id) == "pending"
    await expect(page.locator("#app")).to_be_visible()


# Against the running daemon ----------------------------------------------


QUEUE_SETTINGS = {"min_workers": 2, "max_workers": 2, "workers": 2,
                  "concurrency": 4, "worker_sleep": 1.0}


async def _answers(client: AsyncControlClient) -> bool:
    try:
        await client.request("ping")
    except FuwadError:
        return False
    return True


@pytest.fixture
async def control(config: Config,
                  daemon: Daemon) -> AsyncIterator[AsyncControlClient]:
    """``fuwad run`` as a real process on this test's database, and a
    client of its control socket."""
    daemon.start(queue=QUEUE_SETTINGS)
    client = AsyncControlClient.from_config(config)
    await wait_until(lambda: _answers(client), timeout=30,
                     message="the daemon's control socket")
    yield client


# Finished jobs spread over the last hour, a few failed, as a day's traffic
# leaves them; inserted as any producer's plain INSERT could.  None is 59
# minutes old, so that a minute turning during the test leaves every one
# in the chart's hour and its counts equal the database's.
HISTORY = """
INSERT INTO queue_jobs (job_name, job_class, job_data, queue, status,
                        attempts, max_attempts, created_at, started_at,
                        completed_at, failed_at, last_error)
SELECT 'invoice ' || m || '-' || k, 'app.billing.SendInvoice',
       jsonb_build_object('invoice', m * 100 + k), 'billing',
       CASE WHEN k <= m % 4 - 1 THEN 'failed' ELSE 'completed' END,
       1, 1, at - interval '2 s', at - interval '1 s',
       CASE WHEN k <= m % 4 - 1 THEN NULL ELSE at END,
       CASE WHEN k <= m % 4 - 1 THEN at END,
       CASE WHEN k <= m % 4 - 1 THEN 'SMTPServerDisconnected: timed out' END
FROM generate_series(1, 58) AS m,
     LATERAL generate_series(1, 4 + (m * 7) % 9) AS k,
     LATERAL (SELECT now() - make_interval(mins => m)) AS t(at)
"""


def screenshot_path(tmp_path: Path) -> Path:
    """docs/admin.png when FUWAD_UPDATE_SCREENSHOT=1, else a scratch file,
    so that an ordinary test run leaves the work tree clean."""
    if os.environ.get("FUWAD_UPDATE_SCREENSHOT") == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS / "admin.png"
    return tmp_path / "admin.png"


async def _monitor(client: AsyncControlClient) -> bool:
    answer = await client.request("monitor.running")
    return bool(answer["running"])


async def _live_workers(manager: QueueManager) -> int:
    return int(await manager.pool.fetchval(
        "SELECT count(*) FROM queue_workers WHERE role = 'worker' "
        "AND heartbeat_at > now() - interval '5 s'"))


async def _finished(manager: QueueManager, ids: list[int]) -> bool:
    left = await manager.pool.fetchval(
        "SELECT count(*) FROM queue_jobs WHERE id = ANY($1::bigint[]) "
        "AND status NOT IN ('completed', 'failed')", ids)
    return left == 0


async def test_monitor_stop_and_start_reach_the_daemon_and_screenshot(
    page: Page, site: str, manager: QueueManager,
    control: AsyncControlClient, tmp_path: Path,
) -> None:
    # An hour of finished work as the chart would have seen it, then real
    # work for the real workers.
    await manager.pool.execute(HISTORY)
    ran = [await manager.push(f"primes below {n}",
                              "fuwad.examples.CountPrimes",
                              {"below": n}, queue="reports")
           for n in range(1000, 31000, 1000)]
    ran += [await manager.push(f"nightly export {n}",
                               "fuwad.examples.FailOnPurpose",
                               {"message": "upstream returned 502"},
                               max_attempts=1, queue="exports")
            for n in range(3)]
    await wait_until(lambda: _finished(manager, ran), timeout=60,
                     message="the daemon to run the jobs")
    await wait_until(lambda: _live_workers(manager), message="workers")

    await page.set_viewport_size({"width": 1280, "height": 1180})
    await sign_in(page, site, await make_token(manager, "admin"))
    await expect(page.locator("#monitor-state")).to_have_text("running")
    await expect(page.locator("#workers-table tbody tr")).to_have_count(2)
    await expect(page.locator("#worker-states")).to_contain_text("2")
    stats = await manager.get_stats()
    await expect(page.locator("#count-completed")).to_have_text(
        str(stats["completed"]))
    await expect(page.locator("#chart-summary")).to_contain_text(
        f"{stats['completed']} completed, {stats['failed']} failed")

    # Stop: the daemon drains its workers and keeps none.
    await page.get_by_role("button", name="Stop monitor").click()
    await confirm(page, "Stop monitor")
    await expect(page.locator("#toasts")).to_contain_text("Monitor stopped.")
    assert await _monitor(control) is False
    await expect(page.locator("#monitor-state")).to_have_text("stopped")
    await expect(page.get_by_role("button", name="Start monitor")
                 ).to_be_visible()
    await wait_until(lambda: _no_workers(manager), timeout=30,
                     message="the workers' rows to go")
    await expect(page.locator("#workers-table tbody tr")).to_have_count(0)

    # Start: the pool comes back and takes work again.  Only stopping is
    # disruptive, so only stopping asks first (as the README says).
    await page.get_by_role("button", name="Start monitor").click()
    await expect(page.locator("#toasts")).to_contain_text("Monitor started.")
    await expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert await _monitor(control) is True
    await expect(page.locator("#monitor-state")).to_have_text("running")
    await wait_until(lambda: _live_workers(manager), timeout=30,
                     message="workers after the start")
    late = [await manager.push("welcome email", "fuwad.examples.Sleep",
                               {"seconds": 0.1}, queue="mail")]
    await wait_until(lambda: _finished(manager, late), timeout=30,
                     message="a job after the start")

    # Some waiting work for the picture, then the README's screenshot.
    for n in range(4):
        await manager.push(f"digest for team {n}", "fuwad.examples.Sleep",
                           {"seconds": 1}, queue="mail", delay=3600)
    await expect(page.locator("#workers-table tbody tr")).to_have_count(2)
    await expect(page.locator("#count-pending")).to_have_text("4")
    await expect(page.locator(".toast")).to_have_count(0)  # they fade
    await page.mouse.move(0, 0)
    await page.screenshot(path=str(screenshot_path(tmp_path)))

    # On a phone each worker is a card whose fields carry their labels,
    # and nothing needs sideways scrolling.
    await page.set_viewport_size({"width": 375, "height": 900})
    assert not await _needs_sideways_scroll(page, "#workers .table-wrap")
    assert await _inside(page, "#workers .table-wrap",
                         "#workers-table tbody :is(th, td)") == []
    labels = await page.locator("#workers-table tbody tr").first.locator(
        "td").evaluate_all("""cells => cells.map((cell) =>
            getComputedStyle(cell, '::before').content)""")
    assert labels == ['"PID"', '"Role"', '"State"', '"Current job"',
                      '"Last heartbeat"', '"Jobs done"']
    await page.locator("#workers").screenshot(
        path=str(tmp_path / "workers-phone.png"))


async def _no_workers(manager: QueueManager) -> bool:
    return await _live_workers(manager) == 0


# Small screens ------------------------------------------------------------


async def _inside(page: Page, container: str, cells: str) -> list[str]:
    """Return the ``cells`` under ``container`` that stick out of its box."""
    return list(await page.evaluate("""([container, cells]) => {
        const box = document.querySelector(container).getBoundingClientRect();
        return [...document.querySelectorAll(cells)].filter((cell) => {
            const r = cell.getBoundingClientRect();
            return r.width === 0 || r.left < box.left - 0.5 ||
                r.right > box.right + 0.5;
        }).map((cell) => cell.outerHTML.slice(0, 120));
    }""", [container, cells]))


async def _needs_sideways_scroll(page: Page, selector: str) -> bool:
    return bool(await page.locator(selector).evaluate(
        "node => node.scrollWidth > node.clientWidth"))


LONG_NAME = "a rather long job name " * 5
LONG_CLASS = "app.very.long.module.path.SendMonthlyReport"
LONG_QUEUE = "monthly-reports-for-the-finance-team"


async def test_page_is_usable_at_phone_width(
    page: Page, site: str, manager: QueueManager, tmp_path: Path,
) -> None:
    job_id = await manager.push(LONG_NAME, LONG_CLASS,
                                {"to": "someone@example.com"},
                                queue=LONG_QUEUE)
    await manager.mark_failed(job_id, "Traceback:\n" + "x" * 400)
    for n in range(3):
        await manager.push(f"job {n}", "app.jobs.Report", max_attempts=10)
    await page.set_viewport_size({"width": 375, "height": 740})
    await sign_in(page, site, await make_token(manager, "admin"))
    await expect(page.locator("#count-total")).to_have_text("4")
    await expect(page.locator("#jobs-table tbody tr")).to_have_count(4)

    async def fits() -> bool:
        return bool(await page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth"))

    assert await fits()
    # Each job shows its id, name, status and attempts with no sideways
    # scrolling; the rest is in its detail, as the hint says.
    assert not await _needs_sideways_scroll(page, "#jobs-panel .table-wrap")
    shown = "#jobs-table tbody :is(th, td.name, .pill, td.attempts)"
    assert await page.locator(shown).count() == 16
    assert await _inside(page, "#jobs-panel .table-wrap", shown) == []
    row = page.locator(f"#jobs-table tbody tr[data-key='{job_id}']")
    await expect(row.locator(".pill")).to_have_text("failed")
    await expect(row.locator("td.attempts")).to_have_text("0 of 3")
    await expect(row.locator("td.name")).to_have_attribute(
        "title", LONG_NAME)
    await expect(page.locator("#jobs-hint")).to_be_visible()
    await expect(row.locator("td.class")).to_be_hidden()

    await open_job(page, job_id)
    dialog = await page.locator("#job-dialog").bounding_box()
    assert dialog is not None and dialog["width"] <= 375
    assert await fits()
    await expect(page.locator("#job-job-class-value")).to_have_text(LONG_CLASS)
    await expect(page.locator("#job-queue-value")).to_have_text(LONG_QUEUE)
    await expect(page.get_by_role("button", name="Retry")).to_be_visible()
    await expect(page.get_by_role("button", name="Delete")).to_be_visible()
    await page.screenshot(path=str(tmp_path / "phone.png"))


async def test_long_values_leave_every_column_in_view_at_desktop_width(
    page: Page, site: str, manager: QueueManager,
) -> None:
    job_id = await manager.push(LONG_NAME, LONG_CLASS, queue=LONG_QUEUE)
    await manager.mark_completed(job_id)
    await sign_in(page, site, await make_token(manager, "viewer"))
    row = page.locator(f"#jobs-table tbody tr[data-key='{job_id}']")
    await expect(row.locator("td.event")).to_have_text(
        re.compile("^completed "))
    assert not await _needs_sideways_scroll(page, "#jobs-panel .table-wrap")
    assert await _inside(page, "#jobs-panel .table-wrap",
                         "#jobs-table :is(th, td)") == []
    # Long text is cut with an ellipsis and given whole on hover.
    for cell, text in (("td.name", LONG_NAME), ("td.class", LONG_CLASS),
                       ("td.queue", LONG_QUEUE)):
        await expect(row.locator(cell)).to_have_attribute("title", text)
        assert await row.locator(cell).evaluate(
            "c => c.scrollWidth > c.clientWidth"), cell
