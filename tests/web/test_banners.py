"""Issue 26 point 6: a confirmation banner after every action. Every form a page posts to ends, when it
worked, in one of two ways: a 303 redirect carrying what was done as ``?done=<what>`` which the page it lands
on turns into a ``role="status"`` banner ("Hold placed on …", "Request approved"), or a page that is itself
the confirmation (a secret shown once). This test walks every POST handler of ``callvault/web/*_pages.py``
(and the helpers it calls), so a new form without a banner fails here, not in a user's hands.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import callvault.web as web_package

TEMPLATES = Path(web_package.__file__).parent / "templates"
DONE = re.compile(r"""RedirectResponse\(\s*f?["'](?P<path>/[^?"'{]*)[^"']*?[?&]done=(?P<code>[A-Za-z_{-]*)""")
CONFIRMATION_PAGES = ("secret_once.html", "subject_request_done.html", "subject_request_verify.html",
                      "subject_request_link.html")
"""Pages that are themselves the confirmation of what was just done (they say it in their heading)."""

NOT_ACTIONS: dict[str, str] = {
    "/login": "signing in: it lands on the page asked for, which is the confirmation",
    "/mfa": "the second sign-in step",
    "/mfa/enrol/start": "a step of setting up MFA: the next form is the confirmation",
    "/mfa/enrol": "setting up MFA ends in the recovery codes page",
    "/logout": "signing out lands on the sign-in form",
    "/acknowledge": "acknowledging the policy opens the page asked for",
    "/recordings/{recording_id}/step-up": "re-entering a code opens the download that asked for it",
    "/account/sso/link": "hands over to the identity provider, which comes back with ?linked=1",
    "/password/reset": "before sign-in: the form itself says the password was set",
    "/admin/policy/check": "a dry run that changes nothing: the page shows `policy check`'s answer in place",
}


def _page_modules() -> Iterator[ModuleType]:
    for info in pkgutil.iter_modules(web_package.__path__):
        if info.name.endswith("_pages") or info.name == "pages":
            yield importlib.import_module(f"callvault.web.{info.name}")


def _post_handlers() -> Iterator[tuple[str, Callable[..., Any], ModuleType]]:
    for module in _page_modules():
        for route in getattr(getattr(module, "router", None), "routes", []):
            if "POST" in getattr(route, "methods", set()):
                yield route.path, route.endpoint, module


def _source_with_helpers(fn: Callable[..., Any], module: ModuleType, depth: int = 2) -> str:
    """The handler's source and that of the module-level functions it calls (``_act``, ``_done``...)."""
    source = textwrap.dedent(inspect.getsource(fn))
    if depth == 0:
        return source
    called = {n.func.id for n in ast.walk(ast.parse(source))
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    parts = [source]
    for name in sorted(called):
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper.__module__ == module.__name__ and helper is not fn:
            parts.append(_source_with_helpers(helper, module, depth - 1))
    return "\n".join(parts)


def test_every_post_handler_ends_in_a_banner_or_a_confirmation_page() -> None:
    missing = []
    seen = 0
    for path, fn, module in _post_handlers():
        if path in NOT_ACTIONS:
            continue
        seen += 1
        source = _source_with_helpers(fn, module)
        if not (DONE.search(source) or any(page in source for page in CONFIRMATION_PAGES)):
            missing.append(f"{module.__name__}.{fn.__name__} (POST {path})")
    assert seen > 30, "the walk found too few handlers: is the route discovery broken?"
    assert missing == [], "these forms end without saying what was done:\n" + "\n".join(missing)


def test_every_done_code_has_its_banner_on_the_page_it_lands_on() -> None:
    """Each literal ``done=`` code appears in a template or a module's banner table, and every template that
    shows a banner marks it ``role="status"`` so screen readers announce it."""
    texts = {p.name: p.read_text(encoding="utf-8") for p in TEMPLATES.glob("*.html")}
    every_template = "\n".join(texts.values())
    modules = "\n".join(inspect.getsource(m) for m in _page_modules())
    unknown = []
    for path, fn, module in _post_handlers():
        for match in DONE.finditer(_source_with_helpers(fn, module)):
            code = match["code"]
            if not code or "{" in code:
                continue  # computed from a table (DONE[...]) or the verb itself; the table is checked below
            quoted = (f"'{code}'", f'"{code}"')
            if not any(q in every_template or q in modules.replace(f"done={code}", "") for q in quoted):
                unknown.append(f"POST {path}: done={code}")
    assert unknown == [], "no banner says what these did:\n" + "\n".join(unknown)
    for name, text in texts.items():
        for flash in re.findall(r'<[^>]*class="flash"[^>]*>', text):
            assert 'role="status"' in flash, f"{name}: a banner without role=status: {flash}"
