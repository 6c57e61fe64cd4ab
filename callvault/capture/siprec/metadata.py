"""SIPREC recording metadata (RFC 7865 and its vendor/legacy variants) and what a call is.

Elements and attributes are matched by **local name**, whatever the namespace or prefix: RFC 7865
(``urn:ietf:params:xml:ns:recording:1``), the pre-RFC Oracle/Acme/Metaswitch/Sonus schema
(``urn:ietf:params:xml:ns:recording``, ``id=``/``session=``, ``<send>`` inside ``<participant>``,
``<mode>``), and BroadWorks' ``recording_metadata`` draft (``<aor>`` elements, ``<send><id>``).
Parsing goes through defusedxml (no DTDs, no entities) with limits on size, depth and element
count; anything unacceptable is ``MetadataError`` with a message, never another exception.

Streams are tied to people only through ``participantstreamassoc`` (or the legacy ``<send>``
inside a participant) and the stream's label, never through label order: Sonus sends the
caller's audio on label 2. Unknown extension data is kept verbatim.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from defusedxml import DefusedXmlException  # type: ignore[import-untyped,unused-ignore]
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped,unused-ignore]

from callvault.capture.metadata import normalise_number
from callvault.policy.schema import RecordingScope

MAX_BYTES: Final = 64 * 1024
MAX_DEPTH: Final = 16
MAX_ELEMENTS: Final = 4096
MAX_TEXT: Final = 1024
MAX_EXTENSIONS: Final = 32


class MetadataError(ValueError):
    """The metadata body cannot be used. ``str(err)`` is safe to log and to send in a reason."""


@dataclass
class Participant:
    id: str
    aors: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    send: set[str] = field(default_factory=set)
    recv: set[str] = field(default_factory=set)
    hints: dict[str, str] = field(default_factory=dict)
    """Leaf elements of this participant's extension data, by lower-case local name."""
    disassociated: bool = False


@dataclass
class Stream:
    id: str
    label: str | None = None
    mode: str | None = None


@dataclass
class RecordingMetadata:
    """One recording session's metadata; ``merge`` applies later bodies to it."""

    datamode: str = "complete"
    session_ids: list[str] = field(default_factory=list)
    start_time: datetime | None = None
    end_time: datetime | None = None
    participants: dict[str, Participant] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)
    """Leaf elements of session-level extension data, by lower-case local name."""
    extensions: list[str] = field(default_factory=list)
    """Unknown extension data, serialised verbatim (kept, not interpreted)."""

    def merge(self, update: RecordingMetadata) -> RecordingMetadata:
        """``complete`` replaces everything; ``partial`` adds/overrides what it mentions."""
        if update.datamode == "complete":
            return update
        merged = RecordingMetadata(
            datamode=self.datamode, session_ids=self.session_ids + [s for s in update.session_ids
                                                                       if s not in self.session_ids],
            start_time=update.start_time or self.start_time, end_time=update.end_time or self.end_time,
            participants=dict(self.participants), streams={**self.streams, **update.streams},
            hints={**self.hints, **update.hints}, extensions=(self.extensions + update.extensions)[-MAX_EXTENSIONS:],
        )
        for pid, new in update.participants.items():
            old = merged.participants.get(pid)
            if old is None:
                merged.participants[pid] = new
                continue
            merged.participants[pid] = Participant(
                id=pid, aors=new.aors or old.aors, names=new.names or old.names,
                send=new.send if (new.send or new.recv) else old.send,
                recv=new.recv if (new.send or new.recv) else old.recv,
                hints={**old.hints, **new.hints}, disassociated=new.disassociated or old.disassociated,
            )
        return merged

    def label_of(self, stream_id: str) -> str | None:
        stream = self.streams.get(stream_id)
        return stream.label if stream else None


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].split(":")[-1]


def _attr(el: ET.Element, *names: str) -> str | None:
    wanted = {n.lower() for n in names}
    for key, value in el.attrib.items():
        if _local(key).lower() in wanted:
            return value.strip()
    return None


def _text(el: ET.Element) -> str:
    return re.sub(r"\s+", "", el.text or "") if el.text else ""


def _child_texts(el: ET.Element, name: str) -> list[str]:
    out = []
    for child in el:
        if _local(child.tag).lower() == name:
            text = (child.text or "").strip()
            if not text:  # BroadWorks: <send><id>…</id></send>
                text = " ".join((g.text or "").strip() for g in child if _local(g.tag).lower() == "id").strip()
            if text:
                out.append(text[:MAX_TEXT])
    return out


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _leaves(el: ET.Element, into: dict[str, str]) -> None:
    for node in el.iter():
        if len(node) == 0 and node is not el:
            text = (node.text or "").strip()
            if text:
                into.setdefault(_local(node.tag).lower(), text[:MAX_TEXT])
        for key, value in node.attrib.items():
            if node is not el:
                into.setdefault(f"{_local(node.tag).lower()}@{_local(key).lower()}", value[:MAX_TEXT])


def _check_limits(root: ET.Element) -> None:
    count = 0
    stack: list[tuple[ET.Element, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise MetadataError(f"metadata nests deeper than {MAX_DEPTH} levels")
        if count > MAX_ELEMENTS:
            raise MetadataError(f"metadata has more than {MAX_ELEMENTS} elements")
        stack.extend((child, depth + 1) for child in node)


_KNOWN: Final = {"datamode", "group", "session", "participant", "stream", "sessionrecordingassoc",
                 "participantsessionassoc", "participantstreamassoc", "extensiondata"}


def parse_recording_metadata(data: bytes) -> RecordingMetadata:
    """Parse one metadata body (any of the supported generations); MetadataError if unusable."""
    if len(data) > MAX_BYTES:
        raise MetadataError(f"metadata larger than {MAX_BYTES} bytes")
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MetadataError(f"metadata refused: {type(exc).__name__}") from None
    except ET.ParseError as exc:
        raise MetadataError(f"metadata is not well-formed XML: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise MetadataError(f"metadata is not usable XML: {type(exc).__name__}") from None
    _check_limits(root)
    if _local(root.tag).lower() not in ("recording", "recording_metadata"):
        raise MetadataError(f"metadata root element is <{_local(root.tag)[:40]}>, not <recording>")
    meta = RecordingMetadata()
    for el in root:
        name = _local(el.tag).lower()
        if name == "datamode":
            mode = _text(el).lower()
            meta.datamode = "partial" if mode == "partial" else "complete"
        elif name == "session":
            sid = _attr(el, "session_id", "id")
            if sid:
                meta.session_ids.append(sid)
            for child in el:
                cname = _local(child.tag).lower()
                if cname == "start-time":
                    meta.start_time = meta.start_time or _time(child.text)
                elif cname == "end-time":
                    meta.end_time = _time(child.text)
                elif cname == "extensiondata":
                    _leaves(child, meta.hints)
        elif name == "participant":
            pid = _attr(el, "participant_id", "id")
            if not pid:
                continue
            part = meta.participants.setdefault(pid, Participant(pid))
            for child in el:
                cname = _local(child.tag).lower()
                if cname == "nameid":
                    aor = _attr(child, "aor")
                    if aor:
                        part.aors.append(aor[:MAX_TEXT])
                    part.names += [(n.text or "").strip()[:MAX_TEXT] for n in child
                                   if _local(n.tag).lower() == "name" and (n.text or "").strip()]
                elif cname == "aor" and (child.text or "").strip():
                    part.aors.append((child.text or "").strip()[:MAX_TEXT])
                elif cname == "name" and (child.text or "").strip():
                    part.names.append((child.text or "").strip()[:MAX_TEXT])
                elif cname == "extensiondata":
                    _leaves(child, part.hints)
            part.send.update(_child_texts(el, "send"))
            part.recv.update(_child_texts(el, "recv"))
        elif name == "stream":
            sid = _attr(el, "stream_id", "id")
            if sid is None:
                continue
            labels = _child_texts(el, "label")
            modes = _child_texts(el, "mode")
            meta.streams[sid] = Stream(sid, labels[0] if labels else None, modes[0] if modes else None)
        elif name == "participantstreamassoc":
            pid = _attr(el, "participant_id", "id")
            if not pid:
                continue
            part = meta.participants.setdefault(pid, Participant(pid))
            send, recv = _child_texts(el, "send"), _child_texts(el, "recv")
            part.send = set(send)
            part.recv = set(recv)
        elif name == "participantsessionassoc":
            pid = _attr(el, "participant_id", "id")
            if pid and any(_local(c.tag).lower() == "disassociate-time" for c in el):
                meta.participants.setdefault(pid, Participant(pid)).disassociated = True
        elif name == "extensiondata" or name not in _KNOWN:
            _leaves(el, meta.hints)
            if len(meta.extensions) < MAX_EXTENSIONS:
                meta.extensions.append(ET.tostring(el, encoding="unicode")[:MAX_BYTES])
    return meta


# ------------------------------------------------------------------------------------ what the call is
@dataclass(frozen=True)
class CallFacts:
    """What the metadata says about the call, in the catalog's terms."""

    direction: str
    extension: str | None
    remote_number: str | None
    local_number: str | None
    caller_label: str | None
    """Label of the stream carrying the remote party's (customer's) voice: channel 1 (left)."""
    agent_label: str | None
    """Label of the stream carrying the agent's voice: channel 2 (right)."""
    consent: dict[str, str]
    """Consent evidence found in extension data (``announcement_played_at`` …), possibly empty."""
    mapping: str
    """How streams were tied to people: ``participantstreamassoc``, ``single-party`` or ``none``."""


def _identity(aor: str) -> str:
    """The user part of an AOR: ``sip:2001@pbx`` → ``2001``; ``tel:+1613…`` → ``+1613…``; bare numbers kept."""
    value = aor.strip().strip("<>")
    value = re.sub(r"^(sips?|tel):", "", value, flags=re.IGNORECASE)
    value = value.split("@", 1)[0].split(";", 1)[0]
    return value.strip()


def _digits(value: str) -> str:
    # NetSapiens puts a stray letter after extensions ("1001w"): keep digits, a leading +, * and #.
    plus = value.startswith("+")
    kept = re.sub(r"[^0-9*#]", "", value)
    return ("+" if plus else "") + kept


def _matches(items: tuple[str, ...], ext: str) -> bool:
    for item in items:
        start, _, end = item.partition("-")
        if (not end and ext == start) or (end and len(ext) == len(start) and start.isdigit()
                                          and ext.isdigit() and int(start) <= int(ext) <= int(end)):
            return True
    return False


def _is_extension(value: str, scope: RecordingScope) -> bool:
    if not value or value.startswith("+"):
        return False
    if scope.extensions or scope.excluded_extensions:
        return _matches(scope.extensions, value) or _matches(scope.excluded_extensions, value)
    return value.isdigit() and len(value) <= 6


def _number(value: str, region: str) -> str | None:
    try:
        return normalise_number(value, region)
    except ValueError:
        return None


_CONSENT_KEYS: Final = {
    "announcement-played-at": "announcement_played_at", "announcementplayedat": "announcement_played_at",
    "announcement_played_at": "announcement_played_at", "announcement-version": "announcement_version",
    "announcement_version": "announcement_version", "announcementversion": "announcement_version",
    "agent-notice-at": "agent_notice_at",
    "agent_notice_at": "agent_notice_at", "announcement-ended-at": "announcement_ended_at",
    "announcement_ended_at": "announcement_ended_at", "announcementendedat": "announcement_ended_at",
}


def derive_facts(meta: RecordingMetadata, *, scope: RecordingScope, default_region: str,
                 labels: list[str | None], local_numbers: frozenset[str] = frozenset()) -> CallFacts:
    """Map participants to agent/remote and streams to channels using the policy's tables.

    ``local_numbers``: numbers on our side besides ``scope.trunk_numbers`` (the policy's standing consent
    rules): plain RFC 7865 metadata names the dialled number only as a participant, and a policy without
    trunk numbers (any number is recorded) still needs it to tell which IVR the caller passed.

    ``labels`` are the offered m-lines' labels in order; used only when the metadata ties no
    stream to anyone (one stream → the remote channel; two → documented last resort: m-line order).
    """
    agent: Participant | None = None
    remote: Participant | None = None
    extension = remote_number = local_number = None
    for part in meta.participants.values():
        for aor in part.aors:
            ident = _digits(_identity(aor))
            if not ident:
                continue
            if _is_extension(ident, scope):
                if agent is None:
                    agent, extension = part, ident
                break
            e164 = _number(ident, default_region)
            if e164 and (scope.trunk_for(e164) is not None or e164 in local_numbers):
                local_number = local_number or e164
                break
            if remote is None and e164 is not None:
                remote, remote_number = part, e164
                break
    # Trunk numbers may only appear in vendor extension data (request-URI, To header copies).
    if local_number is None:
        for value in list(meta.hints.values()) + [v for p in meta.participants.values() for v in p.hints.values()]:
            e164 = _number(_digits(_identity(value)), default_region) if re.search(r"\d{6,}", value) else None
            if e164 and (scope.trunk_for(e164) is not None or e164 in local_numbers):
                local_number = e164
                break
    direction = _direction(meta, agent)
    caller_label = agent_label = None
    mapping = "none"
    if agent is not None and agent.send:
        agent_label = next((meta.label_of(s) for s in sorted(agent.send) if meta.label_of(s)), None)
    if remote is not None and remote.send:
        caller_label = next((meta.label_of(s) for s in sorted(remote.send) if meta.label_of(s)), None)
    if agent_label is not None or caller_label is not None:
        mapping = "participantstreamassoc"
        present = [lb for lb in labels if lb is not None]
        if agent_label is None:
            agent_label = next((lb for lb in present if lb != caller_label), None)
        if caller_label is None:
            caller_label = next((lb for lb in present if lb != agent_label), None)
    elif len(labels) == 1:
        caller_label, mapping = labels[0], "single-party"
    consent: dict[str, str] = {}
    for source in [meta.hints] + [p.hints for p in meta.participants.values()]:
        for key, value in source.items():
            target = _CONSENT_KEYS.get(key.split("@")[-1] if "@" in key else key)
            if target and target not in consent:
                consent[target] = value
    return CallFacts(direction, extension, remote_number, local_number, caller_label, agent_label, consent, mapping)


def _direction(meta: RecordingMetadata, agent: Participant | None) -> str:
    hints = dict(meta.hints)
    explicit = (hints.get("direction") or "").lower()
    if explicit in ("inbound", "outbound"):
        return explicit
    if agent is not None:
        calling = agent.hints.get("callingparty", "").lower()
        if calling in ("true", "false"):
            return "outbound" if calling == "true" else "inbound"
    call_type = (hints.get("calltype") or "").lower()
    if call_type in ("origcall", "orig", "originating"):
        return "outbound"
    if call_type in ("termcall", "term", "terminating"):
        return "inbound"
    return "inbound"
