"""Demo data: users for every role in the policy and a few dozen realistic recordings.

Everything goes through the real services (user creation, ingest pipeline), so the demo exercises
the same code paths as production and leaves a genuine audit trail.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
from sqlalchemy import select

from callvault.capture.ingest import ingest_recording
from callvault.core.db import Database
from callvault.core.errors import Conflict, NotFound
from callvault.demo.audio import render_dialogue
from callvault.identity import account_codes, mfa
from callvault.identity import service as identity
from callvault.identity.models import MfaCredential, User
from callvault.policy.schema import PolicyDocument
from callvault.recordings.models import Recording
from callvault.storage.blobstore import BlobStore
from callvault.storage.keys import Keyring

DEMO_PASSWORD = "demo-listen-2026"  # noqa: S105 - printed for demo logins; never used outside the demo


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    extension: str | None = None
    team: str | None = None


SPECIALISTS = [("alice", "2001"), ("bob", "2002"), ("carol", "2003"), ("dave", "2004")]

SCRIPTS: list[list[tuple[str, str]]] = [
    [("agent", "Thank you for calling support, this is {agent}. How can I help?"),
     ("caller", "Hi, I cannot sign in to my account since this morning."),
     ("agent", "I am sorry to hear that. Let me reset your access now."),
     ("caller", "Thank you, that works.")],
    [("agent", "Support, {agent} speaking."),
     ("caller", "My invoice number four eight one five two looks wrong."),
     ("agent", "I see it. The tax line was applied twice; I will correct it."),
     ("caller", "Great, please send me the new copy.")],
    [("agent", "Hello, this is {agent} from support returning your call. This call is recorded."),
     ("caller", "Yes, thanks for calling back about the export problem."),
     ("agent", "The fix is deployed; could you try the report again?"),
     ("caller", "It finished this time. Perfect.")],
    [("agent", "Customer support, {agent} here."),
     ("caller", "I would like to make a complaint about a missed appointment."),
     ("agent", "I understand. I will open a case and a lead will contact you today."),
     ("caller", "Okay, I will wait for the call.")],
]


def demo_users(policy: PolicyDocument) -> list[DemoUser]:
    """One user per role in the policy, plus four specialists with their own extensions."""
    team = policy.recording_scope.teams[0] if policy.recording_scope.teams else None
    names = {"admin": "admin", "executive": "exec", "support_lead": "lead", "it_staff": "it",
             "head_of_customer_success": "head", "hr_manager": "hr", "qa_reviewer": "qa",
             "telephony_integration": "pbx"}  # the phone system's account: relays the agent's controls
    users = [DemoUser(names.get(role, role.replace("_", "-")), role, team=team)
             for role in policy.roles if role != "specialist"]
    if "specialist" in policy.roles:
        users += [DemoUser(name, "specialist", ext, team) for name, ext in SPECIALISTS]
    return users


def demo_mfa_file(data_dir: Path) -> Path:
    """Where the demo keeps its users' TOTP secrets (mode 0600), so `callvault demo-code` can help."""
    return data_dir / "demo-mfa.json"


def seed_users(db: Database, policy: PolicyDocument, *, keyring: Keyring, data_dir: Path) -> list[DemoUser]:
    """Create the demo accounts (skipping any that exist), enrol them in MFA (the policy requires it
    for content roles) and acknowledge the policy for them. Their TOTP secrets go to a 0600 file in
    the demo data directory, so a person trying the demo can get codes without an authenticator app.
    """
    created = demo_users(policy)
    secrets_file = demo_mfa_file(data_dir)
    known: dict[str, str] = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
    with db.unit_of_work() as session:
        for du in created:
            user = session.scalar(select(User).where(User.username == du.username))
            if user is None:
                user = identity.create_user(session, actor="demo", policy=policy, username=du.username,
                                            role=du.role, password=DEMO_PASSWORD, extension=du.extension,
                                            team=du.team, display_name=du.username.title())
            if not mfa.is_enrolled(session, user):
                # As a person would: an enrolment code from the administrator (here, the demo set-up) first.
                issued = account_codes.issue(session, user=user, purpose="enrol", actor="demo")
                enrolment = mfa.begin_enrolment(session, user=user, keyring=keyring, enrolment_code=issued.code)
                mfa.confirm_enrolment(session, user=user, code=pyotp.TOTP(enrolment.secret).now(), keyring=keyring,
                                      enrolment_code=issued.code)
                known[du.username] = enrolment.secret
            identity.acknowledge_policy(session, user=user, policy=policy)
    fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(known, out, indent=1)
    return created


def current_demo_code(data_dir: Path, username: str, *, db: Database | None = None,
                      now: datetime | None = None) -> str:
    """A TOTP code the server will accept for a demo user now: the current step's, or the next one's
    when the current step was used already (each step is accepted once; enrolment at ``demo`` start
    uses one, so the plain "now" code would be refused for up to 30 s). ``db`` tells which step was last used."""
    secrets_file = demo_mfa_file(data_dir)
    known: dict[str, str] = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
    if username not in known:
        raise NotFound(f"{username!r} is not a demo user of {data_dir}")
    moment = now or datetime.now(UTC)
    step = int(moment.timestamp()) // mfa.STEP_SECONDS
    last = _last_used_step(db, username) if db is not None else None
    if last is not None and last >= step:
        if last + 1 > step + mfa.DRIFT_STEPS:
            wait = mfa.STEP_SECONDS - int(moment.timestamp()) % mfa.STEP_SECONDS
            raise Conflict(f"{username}'s codes for this half-minute are used up; ask again in {wait} s")
        step = last + 1
    return str(pyotp.TOTP(known[username], interval=mfa.STEP_SECONDS).at(step * mfa.STEP_SECONDS))


def _last_used_step(db: Database, username: str) -> int | None:
    with db.read_only() as session:
        user = session.scalar(select(User).where(User.username == username))
        cred = session.get(MfaCredential, user.id) if user is not None else None
        return cred.last_used_step if cred is not None else None


def seed_recordings(
    *, db: Database, store: BlobStore, keyring: Keyring, policy: PolicyDocument, count: int = 36,
    now: datetime | None = None, progress: Callable[[int], None] | None = None,
) -> int:
    """Generate and ingest ``count`` recordings over the last 60 days. Returns how many were new."""
    rng = random.Random(20261123)  # noqa: S311 - demo data, not security
    now = now or datetime.now(UTC)
    team = policy.recording_scope.teams[0] if policy.recording_scope.teams else None
    # The policy's first recorded trunk, else the demo company's main number.
    trunk = (policy.recording_scope.trunk_numbers[0].number if policy.recording_scope.trunk_numbers
             else "+14165911668")
    announcement = policy.consent.inbound_announcement
    created = 0
    with db.unit_of_work() as session:
        existing = set(session.scalars(select(Recording.call_id).where(Recording.call_id.like("demo-%"))))
    with tempfile.TemporaryDirectory(prefix="callvault-demo-") as tmp:
        for i in range(count):
            if f"demo-{i:04d}" in existing:  # a second `callvault demo` reuses what is there
                if progress:
                    progress(i + 1)
                continue
            agent, ext = SPECIALISTS[i % len(SPECIALISTS)]
            direction = "outbound" if i % 3 == 2 else "inbound"
            started = (now - timedelta(days=rng.uniform(0, 60), minutes=rng.uniform(0, 600))).replace(microsecond=0)
            turns = [(who, text.format(agent=agent.title())) for who, text in SCRIPTS[i % len(SCRIPTS)]]
            wav = Path(tmp) / f"demo-{i:03d}.wav"
            duration = render_dialogue(turns, wav, seed=i)
            consent: dict[str, str] | None
            if direction == "inbound":
                # The policy's prompt, by version: an announcement naming none is quarantined (A5, B2).
                consent = {"announcement_played_at": started.isoformat(), "announcement_version": announcement.version}
            else:
                consent = {"agent_notice_at": (started + timedelta(seconds=2)).isoformat()}
            if i in (7, 23):
                consent = None  # evidence missing: these arrive quarantined, as the policy requires
            meta = {
                "call_id": f"demo-{i:04d}",
                "direction": direction,
                "started_at": started.isoformat(),
                "ended_at": (started + timedelta(seconds=duration)).isoformat(),
                "extension": ext,
                "agent": agent,
                "team": team,
                "remote_number": f"+1416555{100 + rng.randrange(0, 99):04d}",
                "local_number": trunk,
                "consent": consent,
                "case_ref": f"CASE-{1000 + i}" if i % 4 == 3 else None,
            }
            result = ingest_recording(db=db, store=store, keyring=keyring, audio=wav,
                                      metadata=json.dumps({k: v for k, v in meta.items() if v is not None}),
                                      actor="demo", default_region="CA")
            created += int(result.created)
            if progress:
                progress(i + 1)
    return created
