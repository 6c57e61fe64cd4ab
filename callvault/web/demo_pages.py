"""The demo mailbox for administrators (issue 27): the mails the product sent, without a mail client.

``callvault demo`` delivers the product's mail to a Maildir on this machine (callvault.demo.mailbox) and
names it in ``CALLVAULT_DEMO_MAILBOX``. These pages list those mails (to whom, subject, when) and open
one, its links clickable, so verification codes and approval links can be followed in the browser.
Outside a demo the pages do not exist (404, before anything else is looked at); in a demo only the
roles that administer see them (the refusal is audited like every admin page's), since the mails carry
other people's codes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from callvault.api.deps import Caller, get_runtime, runtime_of
from callvault.demo.mailbox import list_mails, mailbox_in_use, read_mail
from callvault.runtime import Runtime
from callvault.web import oversight_pages
from callvault.web.common import page_caller, render, templates

router = APIRouter(include_in_schema=False)


def demo_mailbox_on(request: Request) -> bool:
    """For the admin navigation: link the mailbox page only where it exists."""
    return mailbox_in_use(runtime_of(request).settings.env) is not None


templates.env.globals["demo_mailbox_on"] = demo_mailbox_on


def demo_mailbox(runtime: Runtime = Depends(get_runtime)) -> Path:
    """The demo's Maildir; 404 when this is not a demo. A dependency listed before the caller, so a
    production server answers 404 even to someone not signed in."""
    folder = mailbox_in_use(runtime.settings.env)
    if folder is None:
        raise HTTPException(status_code=404)
    return folder


@router.get("/admin/mailbox", response_class=HTMLResponse)
def mailbox_page(request: Request, folder: Path = Depends(demo_mailbox), caller: Caller = Depends(page_caller),
                 runtime: Runtime = Depends(get_runtime)) -> Response:
    refused = oversight_pages.admin_only(request, caller, runtime, "demo_mailbox")
    if refused is not None:
        return refused
    return render(request, "mailbox.html", {"caller": caller, "mails": list_mails(folder), "folder": folder})


@router.get("/admin/mailbox/{key}", response_class=HTMLResponse)
def mail_page(key: str, request: Request, folder: Path = Depends(demo_mailbox),
              caller: Caller = Depends(page_caller), runtime: Runtime = Depends(get_runtime)) -> Response:
    refused = oversight_pages.admin_only(request, caller, runtime, "demo_mailbox")
    if refused is not None:
        return refused
    mail = read_mail(folder, key)
    if mail is None:
        return render(request, "not_found.html", {"caller": caller, "what": "mail"}, status_code=404)
    return render(request, "mail.html", {"caller": caller, "mail": mail})
