"""Hostile input (hypothesis, bounded): every parser of outside bytes either succeeds or raises its own
clean error (a CallvaultError, or the SIPREC parsers' documented ValueError subclasses) — never anything else.
Longer runs: ``HYPOTHESIS_PROFILE=soak`` (see docs/reliability.md)."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callvault.capture.audio import probe_audio
from callvault.capture.metadata import parse_metadata
from callvault.capture.siprec import rtp, sdp, sip
from callvault.capture.siprec.metadata import MetadataError, parse_recording_metadata
from callvault.core.errors import CallvaultError
from callvault.policy.loader import parse_policy_text
from tests.conftest import POLICY_A
from tests.support.audio import metadata, wav_bytes

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("soak", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci") if
                               os.environ.get("HYPOTHESIS_PROFILE") in ("ci", "soak") else "ci")
CLEAN = (CallvaultError, MetadataError, sdp.SdpError, sip.SipParseError, rtp.RtpError)


def _mutate(base: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(base)
    for pos, cut, insert in edits:
        p = pos % (len(data) + 1)
        data[p:p + cut] = insert
    return bytes(data)


edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 64), st.binary(max_size=16)), min_size=1,
                 max_size=8)
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
json_values = _scalars | st.lists(_scalars, max_size=4) | st.dictionaries(st.text(max_size=20), _scalars, max_size=4)
META_KEYS = list(metadata().keys())
WAV = wav_bytes(0.3, seed=1)
FLAC = wav_bytes(0.3, seed=2, fmt="FLAC")
POLICY = POLICY_A.read_text()


@PROFILE
@given(st.fixed_dictionaries({}, optional={k: json_values for k in META_KEYS}), st.dictionaries(
    st.sampled_from(META_KEYS), json_values, max_size=3))
def test_metadata_json_of_any_shape_is_accepted_or_refused_cleanly(
        base: dict[str, object], override: dict[str, object]) -> None:
    doc = {**metadata(), **base, **override}
    try:
        raw = json.dumps(doc, allow_nan=True).encode()
    except (TypeError, ValueError):
        return
    with contextlib.suppress(CallvaultError):
        parse_metadata(raw, default_region="CA")


@PROFILE
@given(st.binary(max_size=400))
def test_metadata_bytes_that_are_not_json_are_refused_cleanly(raw: bytes) -> None:
    with contextlib.suppress(CallvaultError):
        parse_metadata(raw, default_region="CA")


@PROFILE
@given(edits)
def test_mutated_policy_yaml_is_accepted_or_refused_cleanly(changes: list[tuple[int, int, bytes]]) -> None:
    text = _mutate(POLICY.encode(), changes).decode("utf-8", errors="replace")
    with contextlib.suppress(CallvaultError):
        parse_policy_text(text)


@pytest.mark.parametrize("bomb", [
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
    "!!python/object/apply:os.system ['echo pwned']\n",
])
def test_yaml_alias_bombs_and_python_tags_are_refused_cleanly(bomb: str) -> None:
    with pytest.raises(CallvaultError):
        parse_policy_text(bomb)


@PROFILE
@given(st.sampled_from([WAV, FLAC]), edits)
def test_mutated_wav_and_flac_are_probed_or_refused_cleanly(base: bytes, changes: list[tuple[int, int, bytes]]) -> None:
    with contextlib.suppress(CallvaultError):
        probe_audio(io.BytesIO(_mutate(base, changes)))


SIPREC_XML = (b"<?xml version='1.0'?><recording xmlns='urn:ietf:params:xml:ns:recording:1'>"
              b"<datamode>complete</datamode><session session_id='s1'><sipSessionID>a;remote=b</sipSessionID>"
              b"</session><participant participant_id='p1'><nameID aor='sip:+14165550142@x'><name>A</name></nameID>"
              b"</participant><stream stream_id='st1' session_id='s1'><label>1</label></stream>"
              b"<participantstreamassoc participant_id='p1'><send>st1</send></participantstreamassoc></recording>")


@PROFILE
@given(edits)
def test_mutated_siprec_xml_is_parsed_or_refused_cleanly(changes: list[tuple[int, int, bytes]]) -> None:
    with contextlib.suppress(*CLEAN):
        parse_recording_metadata(_mutate(SIPREC_XML, changes))


@pytest.mark.parametrize("doc", [
    b"<?xml version='1.0'?><!DOCTYPE r [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><recording>&x;</recording>",
    b"<?xml version='1.0'?><!DOCTYPE r [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
    b"<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'><!ENTITY d '&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;'>]><recording>&d;"
    b"</recording>",
    b"<?xml version='1.0'?><!DOCTYPE r SYSTEM 'http://127.0.0.1:9/evil.dtd'><recording/>",
])
def test_xml_external_entities_and_entity_expansion_are_refused(doc: bytes) -> None:
    with pytest.raises(CLEAN):
        parse_recording_metadata(doc)


INVITE = (b"INVITE sip:srs@10.0.0.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n"
          b"From: <sip:src@10.0.0.1>;tag=1\r\nTo: <sip:srs@10.0.0.10>\r\nCall-ID: call-1\r\nCSeq: 101 INVITE\r\n"
          b"Content-Type: multipart/mixed; boundary=B\r\nContent-Length: 121\r\n\r\n"
          b"--B\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=audio 4000 RTP/AVP 0\r\n"
          b"--B\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<recording/>\r\n--B--\r\n")
SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=label:1\r\na=sendonly\r\n"
       b"m=audio 4002 RTP/AVP 0\r\na=label:2\r\na=sendonly\r\n")
RTP = bytes([0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0xDE, 0xAD, 0xBE, 0xEF]) + b"\xff" * 160


@PROFILE
@given(edits)
def test_mutated_sip_messages_are_parsed_or_refused_cleanly(changes: list[tuple[int, int, bytes]]) -> None:
    try:
        msg = sip.parse_message(_mutate(INVITE, changes))
        sip.body_parts(msg.get("Content-Type") or "", msg.body)
        framer = sip.StreamFramer()
        framer.feed(_mutate(INVITE, changes))
    except CLEAN:
        pass


@PROFILE
@given(edits)
def test_mutated_sdp_offers_are_parsed_and_answered_or_refused_cleanly(changes: list[tuple[int, int, bytes]]) -> None:
    try:
        offer = sdp.parse_sdp(_mutate(SDP, changes))
        plans = sdp.plan_answer(offer, [5000 + 2 * i for i in range(len(offer.media))])
        sdp.build_answer(offer, plans, address="10.0.0.10", session_id=1, version=1)
    except CLEAN:
        pass


@PROFILE
@given(st.binary(max_size=300) | edits.map(lambda e: _mutate(RTP, e)))
def test_arbitrary_rtp_packets_are_parsed_or_refused_cleanly(packet: bytes) -> None:
    with contextlib.suppress(*CLEAN):
        rtp.parse_rtp(packet)
