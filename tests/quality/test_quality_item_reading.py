"""Reading what reviewers wrote about a call (B8): an item's reviews and time-stamped comments are decided
under the review purpose and audited like listening to it, and the dashboard and calibration show only calls
the reader may see. On a variant of policy A with a team-scoped reviewer and a review purpose that needs the
recorded employee's consent (``tests.support.policies.policy_a_with_team_reviewer``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import select

from callvault.audit.models import AuditEntry
from callvault.capture.ingest import ingest_recording
from callvault.identity import service as identity
from callvault.policy import service as policy_service
from callvault.quality import review
from callvault.quality.models import QaReviewItem
from tests.quality.test_quality_api import ALL_YES, MONDAY, WEEK
from tests.support.audio import metadata, wav_bytes
from tests.support.env import PASSWORD, CallvaultEnv, LiveServer, served
from tests.support.policies import policy_a_with_team_reviewer


@dataclasses.dataclass
class Reviewed:
    server: LiveServer
    env: CallvaultEnv
    alice_item: str
    """A sampled call of alice (team customer_support, the lead's team), scored by lead and exec."""
    carol_item: str
    """A sampled call of carol (team billing: outside the lead's scope), scored by two executives."""


@pytest.fixture(scope="module")
def reviewed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reviewed]:
    tmp = tmp_path_factory.mktemp("team-reviewer")
    policy = policy_a_with_team_reviewer(tmp)
    with served(request.config.getoption("--db"), tmp, policy) as (live, environment):
        rt = environment.runtime
        audio = tmp / "call.wav"
        audio.write_bytes(wav_bytes(seconds=3.0))
        for agent, extension, team, hour in (("alice", "2001", "customer_support", 14),
                                             ("carol", "2009", "billing", 15)):
            started = datetime.combine(MONDAY + timedelta(days=1), time(hour), tzinfo=UTC)
            ingest_recording(db=rt.db, store=rt.store, keyring=rt.keyring, audio=audio, actor="test", clock=rt.clock,
                             metadata=metadata(agent=agent, extension=extension, team=team, started=started))
        with live.client("exec") as ex:
            assert ex.post("/api/v1/quality/samples", json=WEEK).status_code == 201
            items = {i["agent"]: i["id"] for i in ex.get("/api/v1/quality/queue").json()}
            for item in items.values():
                assert ex.post(f"/api/v1/quality/items/{item}/reviews", json={
                    "answers": ALL_YES, "coaching_note": "Warm greeting."}).status_code == 201
            assert ex.post(f"/api/v1/quality/items/{items['alice']}/comments",
                           json={"at_seconds": 1.0, "text": "Price quoted here"}).status_code == 201
        with live.client("lead") as lead:
            assert lead.post(f"/api/v1/quality/items/{items['alice']}/reviews", json={
                "answers": {**ALL_YES, "accurate": "no"}}).status_code == 201
        with rt.db.unit_of_work() as session:  # a second executive's score on carol's call: a calibration pair
            doc = policy_service.current_policy(session, clock=rt.clock)
            second = identity.create_user(session, actor="test", policy=doc, username="exec2", role="executive",
                                          password=PASSWORD, clock=rt.clock)
            identity.acknowledge_policy(session, user=second, policy=doc, clock=rt.clock)
            actor = identity.actor_for(session, second, policy_service.current_policy(session, clock=rt.clock))
            item = session.get(QaReviewItem, items["carol"])
            assert item is not None
            review.submit(session, policy=doc, actor=actor, item=item, answers={**ALL_YES, "courteous": "no"},
                          clock=rt.clock)
        yield Reviewed(live, environment, items["alice"], items["carol"])


def _entries(env: CallvaultEnv, actor: str, item_id: str) -> list[AuditEntry]:
    with env.runtime.db.unit_of_work() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.seq))
        return [e for e in entries if (e.details or {}).get("quality_item") == item_id]


def test_a_reviewer_the_review_purpose_refuses_reads_no_reviews_or_comments_and_is_on_record(
        reviewed: Reviewed) -> None:
    item = reviewed.alice_item
    before = len(_entries(reviewed.env, "exec", item))
    with reviewed.server.client("exec") as ex:
        notes = ex.get(f"/api/v1/quality/items/{item}/reviews")
        comments = ex.get(f"/api/v1/quality/items/{item}/comments")
        audio = ex.get(f"/api/v1/quality/items/{item}/audio")
    # alice has not consented to spot checks: her call's coaching notes and comments are refused as its audio is.
    for refused in (notes, comments, audio):
        assert refused.status_code == 403 and "consent" in refused.json()["message"], refused.text
    assert "Warm greeting" not in notes.text and "Price quoted" not in comments.text
    entries = _entries(reviewed.env, "exec", item)[before:]
    assert [(e.decision, e.purpose, (e.details or {}).get("read")) for e in entries] == [
        ("deny", "spot_check", "reviews"), ("deny", "spot_check", "comments"), ("deny", "spot_check", None)]

    with reviewed.server.client("alice") as alice:
        assert alice.post("/api/v1/me/consents", json={"purpose": "spot_check"}).status_code == 201
    try:
        with reviewed.server.client("exec") as ex:
            notes = ex.get(f"/api/v1/quality/items/{item}/reviews")
            comments = ex.get(f"/api/v1/quality/items/{item}/comments")
        assert notes.status_code == 200 and {r["reviewer"] for r in notes.json()} == {"exec", "lead"}
        assert [c["text"] for c in comments.json()] == ["Price quoted here"]
        allowed = _entries(reviewed.env, "exec", item)[-2:]
        assert [(e.decision, e.purpose, (e.details or {}).get("read")) for e in allowed] == [
            ("allow", "spot_check", "reviews"), ("allow", "spot_check", "comments")]
    finally:
        with reviewed.server.client("alice") as alice:
            assert alice.delete("/api/v1/me/consents/spot_check").status_code == 204


def test_the_item_page_shows_no_coaching_notes_to_a_refused_reviewer(reviewed: Reviewed) -> None:
    from tests.api.test_auth_web import web_sign_in

    item = reviewed.alice_item
    with reviewed.server.client(headers={"Accept": "text/html"}) as browser:
        web_sign_in(browser, reviewed.env, "exec")
        page = browser.get(f"/quality/items/{item}")
    assert page.status_code == 403 and "consent" in page.text
    assert "Warm greeting" not in page.text and "Price quoted" not in page.text
    assert (_entries(reviewed.env, "exec", item)[-1].decision, _entries(reviewed.env, "exec", item)[-1].details
            ["read"]) == ("deny", "item page")


def test_a_team_scoped_reviewer_sees_only_their_teams_calls_on_the_dashboard_and_in_calibration(
        reviewed: Reviewed) -> None:
    with reviewed.server.client("lead") as lead:
        agents = {r["key"] for r in lead.get("/api/v1/quality/dashboard", params={"by": "agent"}).json()}
        teams = {r["key"] for r in lead.get("/api/v1/quality/dashboard", params={"by": "team"}).json()}
        pairs = lead.get("/api/v1/quality/calibration").json()
        assert lead.get(f"/api/v1/quality/items/{reviewed.carol_item}/reviews").status_code == 404
    assert agents == {"alice"} and teams == {"customer_support"}
    assert [p["item_id"] for p in pairs] == [reviewed.alice_item]
    assert "carol" not in str(pairs)
    with reviewed.server.client("exec") as ex:  # an executive (all calls) sees both teams
        agents = {r["key"] for r in ex.get("/api/v1/quality/dashboard", params={"by": "agent"}).json()}
        pairs = ex.get("/api/v1/quality/calibration").json()
    assert agents == {"alice", "carol"}
    assert {p["item_id"] for p in pairs} == {reviewed.alice_item, reviewed.carol_item}


def test_the_dashboard_page_leaves_out_calls_outside_the_reviewers_team(reviewed: Reviewed) -> None:
    from tests.api.test_auth_web import web_sign_in

    with reviewed.server.client(headers={"Accept": "text/html"}) as browser:
        web_sign_in(browser, reviewed.env, "lead")
        page = browser.get("/quality/dashboard")
    assert page.status_code == 200 and "alice" in page.text
    assert "carol" not in page.text and "billing" not in page.text

