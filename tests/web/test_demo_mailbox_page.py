"""The demo mailbox page (issue 27): in a demo an administrator reads the mails the product sent (to whom,
subject, when), opens one and follows its links; outside a demo the page does not exist; in a demo nobody
else reads other people's codes."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from callvault.demo.mailbox import MAILBOX_ENV, DemoMailbox
from callvault.notify import service as notify
from callvault.notify.service import SmtpSettings, send_due
from tests.api.test_auth_web import web_sign_in
from tests.conftest import POLICY_A, fresh_database
from tests.support.env import CallvaultEnv, LiveServer, make_env

LINK = "http://127.0.0.1:8000/requests/verify?token=abc123"


@pytest.fixture(scope="module")
def demo_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server in demo mode (``callvault demo`` names its mailbox in the environment) with one mail in it."""
    tmp = tmp_path_factory.mktemp("demo-mailbox")
    box = DemoMailbox(tmp, announce=lambda _line: None)
    with fresh_database(request.config.getoption("--db"), tmp) as url:
        env = make_env(tmp / "data", url, POLICY_A, extra_env={MAILBOX_ENV: str(box.folder)})
        live = LiveServer(env)
        try:
            with env.runtime.db.unit_of_work() as session:
                notify.enqueue(session, to="lead@localhost", subject="Your access request <needs> approval",
                               body=f"Hello,\n\nopen {LINK} to approve it.\n")
            send_due(env.runtime.db, SmtpSettings.from_env(box.smtp_env), clock=env.runtime.clock)
            live.start()
            yield live
        finally:
            live.stop()
            box.close()
            env.close()


def test_an_administrator_lists_the_demo_mails_and_opens_one_with_its_link_clickable(demo_server: LiveServer) -> None:
    with demo_server.client() as browser:
        web_sign_in(browser, demo_server.env, "it")
        listing = browser.get("/admin/mailbox")
        assert listing.status_code == 200, listing.text
        row = next(line for line in listing.text.splitlines() if "lead@localhost" in line)
        assert "Your access request &lt;needs&gt; approval" in row  # escaped, never markup
        assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>", row)
        assert 'href="/admin/mailbox"' in browser.get("/admin/users").text  # the admin navigation links it
        opened = browser.get(html.unescape(re.search(r'href="(/admin/mailbox/[^"]+)"', row).group(1)))  # type: ignore[union-attr]
        assert opened.status_code == 200, opened.text
        assert f'<a href="{html.escape(LINK)}">{html.escape(LINK)}</a>' in opened.text
        assert "to approve it." in opened.text and "lead@localhost" in opened.text
        assert browser.get("/admin/mailbox/no-such-mail").status_code == 404


def test_someone_who_does_not_administer_cannot_read_the_demo_mailbox(demo_server: LiveServer) -> None:
    with demo_server.client() as browser:
        web_sign_in(browser, demo_server.env, "lead")
        refused = browser.get("/admin/mailbox")
        assert refused.status_code == 403
        assert "lead@localhost" not in refused.text


def test_outside_a_demo_there_is_no_mailbox_page(server: LiveServer, env: CallvaultEnv, tmp_path: Path) -> None:
    with server.client() as anonymous:
        assert anonymous.get("/admin/mailbox", follow_redirects=False).status_code == 404
    with server.client() as browser:
        web_sign_in(browser, env, "it")
        assert browser.get("/admin/mailbox").status_code == 404
        assert browser.get("/admin/mailbox/anything").status_code == 404
        assert "/admin/mailbox" not in browser.get("/admin/users").text
