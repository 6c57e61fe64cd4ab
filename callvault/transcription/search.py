"""Full-text search over transcripts without plaintext words at rest: keyed hashes of tokens.

Each distinct normalised token of a transcript is stored as HMAC-SHA-256(search key, token) in
``transcript_terms``. Without the search key the table says nothing about what was said; with it,
an attacker can test guesses (a dictionary attack on single words), which is why the key lives
beside the KEKs (``<key dir>/search.key``, mode 0600, or ``CALLVAULT_SEARCH_KEY``/``_FILE``) and
not in the database. Trade-offs, stated in docs/transcription.md: equality only (no prefixes,
no fuzzy matching, no phrases), and the number of recordings sharing a token is visible (frequency).

The index holds the words as spoken, so a purpose that may see only a masked copy (``serves`` other than
``original``) may not search it: "does any call hold 77231904?" would be answered from words its copy hides.
Such a search is refused before the index is read (``masked_purpose_refusal``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from callvault.audit import service as audit
from callvault.core.clock import Clock, system_clock
from callvault.core.errors import AccessDenied, ConfigurationError
from callvault.policy.decide import Action, Actor, Decision, decide
from callvault.policy.schema import PolicyDocument
from callvault.recordings import service as recordings
from callvault.recordings.models import Recording, RecordingState
from callvault.recordings.service import scope_clause
from callvault.transcription.models import TranscriptTerm
from callvault.transcription.redaction import digits_of

SEARCH_KEY_FILE = "search.key"
MAX_QUERY_TERMS = 10
MAX_AUDITED_IDS = 200
"""The most recording ids one ``transcript.search`` entry names: the largest page a search returns (the API's
``limit`` and the search page's ``MAX_PAGE``), so in practice every hit; a longer list is cut, saying how much."""
_TOKEN_RE = re.compile(r"[\w@.'-]+")


def normalise(text: str) -> list[str]:
    """Lower-case, accent-free tokens; numerals and number words become digits ("4,111" → "4111")."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    out = []
    for raw in _TOKEN_RE.findall(folded):
        word = raw.strip(".'-")
        if not word:
            continue
        digits = digits_of(word)
        if digits is not None:
            if digits:
                out.append(digits)
            continue
        out.append(word.replace("'", ""))
    return out


def load_search_key(key_dir: Path, env: Mapping[str, str]) -> bytes:
    """The search key: from the environment, or ``<key_dir>/search.key`` (created 0600 on first use)."""
    inline = (env.get("CALLVAULT_SEARCH_KEY") or "").strip()
    file_name = (env.get("CALLVAULT_SEARCH_KEY_FILE") or "").strip()
    if inline or file_name:
        text = inline or Path(file_name).read_text(encoding="ascii")
        return _decode(text, "CALLVAULT_SEARCH_KEY")
    path = key_dir / SEARCH_KEY_FILE
    if not path.exists():
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(base64.b64encode(secrets.token_bytes(32)) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(f"search key {path} is readable by other users; run: chmod 600 {path}")
    return _decode(path.read_text(encoding="ascii"), str(path))


def _decode(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{source} is not valid base64") from None
    if len(key) < 32:
        raise ConfigurationError(f"{source} must hold at least 32 bytes")
    return key


def term_hash(key: bytes, token: str) -> str:
    return hmac.new(key, b"callvault-term|" + token.encode(), sha256).hexdigest()


def index(session: Session, *, key: bytes, recording_id: str, texts: Iterable[str]) -> int:
    """Replace the recording's index terms with those of ``texts``; returns how many distinct terms."""
    session.execute(delete(TranscriptTerm).where(TranscriptTerm.recording_id == recording_id))
    hashes = {term_hash(key, t) for text in texts for t in normalise(text)}
    session.add_all(TranscriptTerm(recording_id=recording_id, term_hash=h) for h in sorted(hashes))
    return len(hashes)


def candidates(session: Session, *, key: bytes, policy: PolicyDocument, actor: Actor, query: str,
               limit: int = 50) -> list[Recording]:
    """Recordings within the actor's scope whose transcript holds every token of ``query``.

    The caller still runs each one through ``decide()`` with the purpose (quarantine, consent...).
    """
    tokens = sorted(set(normalise(query)))[:MAX_QUERY_TERMS]
    scope = scope_clause(policy, actor)
    if not tokens or scope is None:
        return []
    hashes = [term_hash(key, t) for t in tokens]
    matching = (select(TranscriptTerm.recording_id).where(TranscriptTerm.term_hash.in_(hashes))
                .group_by(TranscriptTerm.recording_id)
                .having(func.count(TranscriptTerm.term_hash) == len(hashes)))
    return list(session.scalars(
        select(Recording).where(Recording.id.in_(matching), Recording.state == RecordingState.AVAILABLE, scope)
        .order_by(Recording.started_at.desc(), Recording.id.desc()).limit(limit)))


@dataclass(frozen=True)
class SearchAnswer:
    """What a search gives: the recordings found, or the refusal to show (after its audit entry is committed)."""

    hits: list[Recording]
    refusal: AccessDenied | None = None


def masked_purpose_refusal(policy: PolicyDocument, purpose: str | None) -> AccessDenied | None:
    """The refusal for a purpose whose decisions serve only a masked copy (A6 training's anonymised copy, a
    "minimum necessary" purpose's redacted one), or None.

    Why refuse rather than filter: the index holds keyed hashes of the words as spoken. Dropping the hits whose
    masked transcript lacks the words would still read the index first, and how long the answer takes would say
    whether a masked value was said; a second index of masked words would need every transcript re-indexed. So
    such a purpose opens the calls it is given (their transcripts come masked) and never asks the index. Decided
    from the policy's purpose alone, before any recording is looked at, so the answer is the same whatever was said.
    """
    rule = policy.purposes.get((purpose or "").strip())
    if rule is None or rule.serves == "original":
        return None
    copy = "an anonymised copy" if rule.serves == "anonymised_derivative" else "only the redacted copy"
    return AccessDenied(
        f"Transcript search is not available for purpose {purpose!r}: it is served {copy} of what was said, "
        "with numbers, e-mail addresses and names masked, and the search index holds the words as spoken, so a "
        "search would tell whether a masked value was said. Open the calls you may use for this purpose (their "
        "transcripts come masked), or search naming a purpose that serves the original.",
        clauses=tuple(rule.clause_ids))


def allowed_hits(session: Session, *, key: bytes, policy: PolicyDocument, actor: Actor, query: str,
                 purpose: str | None, source_ip: str | None, limit: int = 50,
                 clock: Clock = system_clock) -> SearchAnswer:
    """``candidates`` that ``decide()`` lets the actor read the transcript of for ``purpose``, audited; or the
    refusal for a purpose that serves only a masked copy (``masked_purpose_refusal``), audited as refused.

    One function for the API and the search page, so both find exactly the calls the purpose could then
    open: the same facts as reading one transcript (consents, a sampled call's reviewers, a request's
    handlers). A search that found calls but none allowed, without a purpose, is recorded as refused.

    Audit: one ``transcript.search`` entry (the purpose, the number of words and hits, the ids of the
    recordings returned; never the words), and one ``recording.transcript`` entry per recording returned
    (``view: search_hit``): a hit tells that the call holds those words, which is reading its content, and
    the recorded employee's access history (``oversight.transparency``) is built from recording entries.
    The caller commits, then raises ``refusal`` if there is one."""
    terms = len(normalise(query))
    refusal = masked_purpose_refusal(policy, purpose)
    if refusal is not None:
        audit.append(session, audit.AuditEvent(
            actor=actor.username, actor_role=actor.role, action="transcript.search", decision="deny",
            purpose=purpose, source_ip=source_ip, reason=refusal.message, clauses=refusal.clauses,
            details={"terms": terms, "hits": 0, "recording_ids": []}), clock=clock)
        return SearchAnswer([], refusal)
    rows = candidates(session, key=key, policy=policy, actor=actor, query=query, limit=limit)
    now = clock.now()
    found: list[tuple[Recording, Decision]] = []
    for r in rows:
        decision = decide(policy=policy, actor=actor, action=Action.TRANSCRIPT, purpose=purpose, now=now,
                          recording=recordings.content_facts(session, r, policy=policy, purpose=purpose, now=now))
        # Only the original's words are in the index: a decision serving a masked copy never matches on them.
        if decision.allowed and decision.serves == "original":
            found.append((r, decision))
    hits = [r for r, _ in found]
    denied = bool(rows) and not hits and not purpose
    ids = [r.id for r in hits]
    details: dict[str, object] = {"terms": terms, "hits": len(hits), "recording_ids": ids[:MAX_AUDITED_IDS]}
    if len(ids) > MAX_AUDITED_IDS:
        details["recording_ids_left_out"] = len(ids) - MAX_AUDITED_IDS
    audit.append(session, audit.AuditEvent(
        actor=actor.username, actor_role=actor.role, action="transcript.search",
        decision="deny" if denied else "allow", purpose=purpose, source_ip=source_ip,
        reason="no purpose named" if denied else "", details=details), clock=clock)
    for r, decision in found:
        recordings.record_content(session, actor=actor, action=Action.TRANSCRIPT, recording_id=r.id,
                                  decision=decision, source_ip=source_ip,
                                  details={"view": "search_hit", "terms": terms}, clock=clock)
    return SearchAnswer(hits)
