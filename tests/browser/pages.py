"""What the browser tests read off the dashboard's pages and do on them,
by the page contract's selectors (ids, ``data-*`` attributes, form actions)."""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Locator, Page, Response, ViewportSize

try:
    from playwright.sync_api import expect
except ImportError:
    # The tests cannot get a page then: conftest's fixtures skip them (or
    # fail them under CI) before any of them reaches for expect.
    expect = None  # type: ignore[assignment]

__all__ = [
    "AUTH",
    "CSP",
    "SECURITY_HEADERS",
    "SUBMIT",
    "VIEWPORT",
    "Dialogs",
    "action_url",
    "count_is",
    "css_string",
    "expect",
    "form_body",
    "job_field",
    "job_row",
    "no_markup_from",
    "queue_cell",
    "queue_row",
    "submit",
]

AUTH = ("admin", "secret")
VIEWPORT: ViewportSize = {"width": 1200, "height": 800}

# The headers the contract asks of every dashboard response.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}

SUBMIT = "button[type=submit], button:not([type]), input[type=submit]"


class Dialogs:
    """Every dialog a page opened, as (type, message). A confirmation (the
    dashboard asks one before a cancel or a purge) is answered yes, as by
    the operator who pressed the button; any other dialog is dismissed."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def watch(self, page: Page) -> None:
        page.on("dialog", self._answer)

    def _answer(self, dialog: Dialog) -> None:
        self.seen.append((dialog.type, dialog.message))
        if dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()


def css_string(value: str) -> str:
    """``value`` as a double-quoted CSS string, for an attribute selector."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def queue_row(page: Page, queue: str) -> Locator:
    return page.locator(f"table#queues tr[data-queue={css_string(queue)}]")


def queue_cell(page: Page, queue: str, field: str) -> Locator:
    return queue_row(page, queue).locator(f"td[data-field={css_string(field)}]")


def job_row(page: Page, table: str, job_id: object) -> Locator:
    return page.locator(f"table#{table} tr[data-job={css_string(str(job_id))}]")


def job_field(page: Page, field: str) -> Locator:
    return page.locator(f"#job [data-field={css_string(field)}]")


def count_is(expected: int) -> re.Pattern[str]:
    """Matches a cell showing ``expected`` (with thousands separators, or
    marked as an estimate), for Playwright's bounded ``to_have_text``."""
    grouped = f"{expected:,}"
    return re.compile(rf"^\s*(≈\s*)?({expected}|{re.escape(grouped)})\s*$")


def submit(page: Page, form: Locator) -> Response:
    """Press ``form``'s submit button; the answer to its POST (a 303, or the
    refusal), once the page it led to has loaded."""
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        form.locator(SUBMIT).first.click()
    page.wait_for_load_state()
    return answer.value


def action_url(page: Page, form: Locator) -> str:
    """The absolute URL ``form`` posts to."""
    return urllib.parse.urljoin(page.url, form.get_attribute("action") or page.url)


def form_body(form: Locator) -> str:
    """``form``'s fields, urlencoded as the browser would send them."""
    return str(form.evaluate("f => new URLSearchParams(new FormData(f)).toString()"))


def no_markup_from(page: Page, payload_marker: str = "alert(1)") -> None:
    """Nothing on ``page`` came from the payload as markup: no image with
    its ``src=x``, no element carrying its handler, no script holding it."""
    injected = page.evaluate(
        """marker => ({
            images: document.querySelectorAll('img[src="x"]').length,
            handlers: [...document.querySelectorAll('*')].filter(
                e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
            scripts: [...document.scripts].filter(s => s.textContent.includes(marker)).length,
        })""",
        payload_marker,
    )
    assert injected == {"images": 0, "handlers": 0, "scripts": 0}, injected
