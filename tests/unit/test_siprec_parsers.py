"""SIPREC parsers (SIP, SDP, metadata, RTP): vendor quirks accepted, hostile input refused cleanly."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from callvault.capture.siprec import sip
from callvault.capture.siprec.metadata import MetadataError, derive_facts, parse_recording_metadata
from callvault.capture.siprec.rtp import ALAW, ULAW, Mixer, RtpError, StreamTimer, parse_rtp
from callvault.capture.siprec.sdp import SdpError, build_answer, parse_sdp, plan_answer
from callvault.policy.schema import RecordingScope

INVITE = (
    b"INVITE sip:srs@10.0.0.10 SIP/2.0\r\n"
    b"v:SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n"
    b"f: <sip:src@10.0.0.1>;tag=1\r\nt: <sip:srs@10.0.0.10>\r\ni: call-1\r\nCSeq: 101 INVITE\r\n"
    b"m: \"H323 User 1\" <sip:src@10.0.0.1;transport=udp;+sip.src>\r\n"
    b"Require: siprec\r\nc: multipart/mixed; boundary=\"B\"\r\nl: {len}\r\n\r\n"
)
BODY = (
    b"--B\nContent-Type:application/rs-metadata+xml\nContent-Disposition:recording-session\n\n"
    b"<recording xmlns='urn:x'/>\n"
    b"--B\nContent-Type:application/sdp;charset=ISO-10646\n\nv=0\nm=audio 4000 RTP/AVP 0\n--B--\n"
)


def _invite(body: bytes = BODY) -> bytes:
    return INVITE.replace(b"{len}", str(len(body)).encode()) + body


def test_sip_parser_accepts_compact_headers_missing_spaces_and_bare_lf_parts() -> None:
    msg = sip.parse_message(_invite())
    assert msg.method == "INVITE" and msg.call_id == "call-1" and msg.cseq == (101, "INVITE")
    assert msg.branch == "z9hG4bKabc"
    assert sip.has_param_anywhere(msg.get("Contact") or "", "+sip.src")
    parts = sip.body_parts(msg.get("Content-Type") or "", msg.body)
    assert [p.content_type for p in parts] == ["application/rs-metadata+xml", "application/sdp"]
    assert parts[1].body.startswith(b"v=0\nm=audio")


def test_sip_response_copies_dialog_headers_and_adds_a_to_tag() -> None:
    msg = sip.parse_message(_invite())
    data = sip.make_response(msg, 200, "OK", to_tag="abc", body=b"v=0\r\n").to_bytes()
    resp = sip.parse_message(data)
    assert resp.status == 200 and sip.param(resp.get("To") or "", "tag") == "abc"
    assert resp.get("Content-Length") == "5" and resp.content_type == "application/sdp"


def test_tcp_framer_cuts_messages_by_content_length_across_reads() -> None:
    framer = sip.StreamFramer()
    data = b"\r\n" + _invite() + _invite()
    out: list[bytes] = []
    for i in range(0, len(data), 97):
        out += framer.feed(data[i : i + 97])
    assert out == [_invite(), _invite()]


def test_tcp_framer_refuses_a_stream_without_content_length() -> None:
    with pytest.raises(sip.SipParseError):
        sip.StreamFramer().feed(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n")


@pytest.mark.parametrize("data", [
    b"", b"garbage", b"INVITE sip:x SIP/2.0\r\n\r\n",
    b"INVITE sip:x SIP/2.0\r\nVia: a\r\nCall-ID: b\r\nCSeq: x\r\n\r\n",
    b"INVITE sip:x SIP/2.0\r\nVia: a\r\nCall-ID: b\r\nCSeq: 1 INVITE\r\nContent-Length: 99\r\n\r\nshort",
    b"INVITE sip:x SIP/2.0\r\n bad continuation\r\n\r\n", b"INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n",
])
def test_sip_parser_refuses_malformed_messages_with_a_message(data: bytes) -> None:
    with pytest.raises(sip.SipParseError) as info:
        sip.parse_message(data)
    assert str(info.value)


def test_sip_parser_fuzz_never_raises_anything_but_parse_errors() -> None:
    rng = random.Random(9)
    base = _invite()
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 12)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                del data[pos : pos + rng.randint(1, 40)]
            else:
                data[pos:pos] = rng.randbytes(rng.randint(1, 20))
        try:
            msg = sip.parse_message(bytes(data))
            sip.body_parts(msg.get("Content-Type") or "", msg.body)
        except sip.SipParseError:
            pass


OFFER = b"""v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4000 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendonly
a=label:1
m=audio 4002 RTP/AVP 9 8
a=inactive
a=label:2
m=video 4004 RTP/AVP 96
a=label:3
m=audio 4006 RTP/SAVP 0
a=label:4
m=audio 4008 RTP/AVP 97
a=rtpmap:97 iLBC/8000
a=label:5
"""


def test_answer_has_one_m_line_per_offer_in_order_with_directions_and_labels() -> None:
    offer = parse_sdp(OFFER)
    plans = plan_answer(offer, [6000, 6002, 6004, 6006, 6008])
    assert [p.accepted for p in plans] == [True, True, False, False, False]
    assert plans[1].codecs[0].name == "G722" and plans[1].codecs[0].sample_rate == 16000
    answer = build_answer(offer, plans, address="10.0.0.10", session_id=1, version=2).decode()
    mlines = [line for line in answer.splitlines() if line.startswith("m=")]
    assert mlines == ["m=audio 6000 RTP/AVP 0", "m=audio 6002 RTP/AVP 9", "m=video 0 RTP/AVP 96",
                      "m=audio 0 RTP/SAVP 0", "m=audio 0 RTP/AVP 97"]  # iLBC: nothing here decodes it
    assert "a=recvonly" in answer and "a=inactive" in answer and "telephone-event" not in answer
    assert [line for line in answer.splitlines() if line.startswith("a=label")] == [f"a=label:{i}" for i in range(1, 6)]


def test_hold_address_offer_is_answered_inactive() -> None:
    offer = parse_sdp(b"v=0\nc=IN IP4 0.0.0.0\nm=audio 4000 RTP/AVP 0\n")
    plan = plan_answer(offer, [6000])[0]
    assert plan.accepted and not plan.active


@pytest.mark.parametrize("data", [b"", b"m=audio x RTP/AVP 0", b"v=0\nm=audio 99999 RTP/AVP 0", b"v=0\nbad",
                                  b"\xff\xfe", b"v=0\n" + b"m=audio 1 RTP/AVP 0\n" * 40])
def test_sdp_parser_refuses_garbage_cleanly(data: bytes) -> None:
    with pytest.raises(SdpError):
        parse_sdp(data)


SCOPE = RecordingScope(extensions=("2000-2099",), excluded_extensions=("2099",))
RFC7865 = b"""<?xml version="1.0"?>
<tns:recording xmlns:tns="urn:ietf:params:xml:ns:recording">
 <tns:datamode>complete</tns:datamode>
 <tns:participant participant_id="A"><tns:nameID aor="sip:2001@pbx"/></tns:participant>
 <tns:participant participant_id="C"><tns:nameID aor="6135550100@carrier"/></tns:participant>
 <tns:stream stream_id="s1"><tns:label>1</tns:label></tns:stream>
 <tns:stream stream_id="s2"><tns:label>2</tns:label></tns:stream>
 <tns:participantstreamassoc participant_id="C"><tns:send>s2</tns:send><tns:recv>s1</tns:recv>
 </tns:participantstreamassoc>
 <tns:participantstreamassoc participant_id="A"><tns:send>s1</tns:send><tns:recv>s2</tns:recv>
 </tns:participantstreamassoc>
 <callData xmlns="urn:ietf:params:xml:ns:callData"><fromhdr>x</fromhdr></callData>
</tns:recording>"""


def test_metadata_maps_streams_by_association_not_label_order() -> None:
    facts = derive_facts(parse_recording_metadata(RFC7865), scope=SCOPE, default_region="CA", labels=["1", "2"])
    assert (facts.caller_label, facts.agent_label) == ("2", "1")
    assert facts.extension == "2001" and facts.remote_number == "+16135550100"
    assert facts.mapping == "participantstreamassoc"


def test_metadata_partial_update_merges_and_complete_replaces() -> None:
    meta = parse_recording_metadata(RFC7865)
    partial = parse_recording_metadata(b"""<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>partial
    </datamode><participant participant_id="A"><nameID aor="sip:2005@pbx"/></participant></recording>""")
    merged = meta.merge(partial)
    assert merged.participants["A"].aors == ["sip:2005@pbx"] and merged.participants["A"].send == {"s1"}
    assert "C" in merged.participants
    complete = parse_recording_metadata(b"<recording><participant id='Z'/></recording>")
    assert list(meta.merge(complete).participants) == ["Z"]


def test_unknown_extension_data_is_kept_verbatim() -> None:
    meta = parse_recording_metadata(RFC7865)
    assert any("fromhdr" in ext for ext in meta.extensions)


def test_broadworks_draft_metadata_is_understood() -> None:
    meta = parse_recording_metadata(b"""<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec">
      <dataMode>complete</dataMode>
      <participant id="p1"><aor>sip:2010@bw</aor><send><id>st1</id></send></participant>
      <participant id="p2"><aor>tel:+16135550123</aor><send><id>st2</id></send></participant>
      <stream id="st1"><label>10</label></stream><stream id="st2"><label>20</label></stream>
      <extensiondata><broadWorksRecordingMetadata><callType>origCall</callType></broadWorksRecordingMetadata>
      </extensiondata></recording_metadata>""")
    facts = derive_facts(meta, scope=SCOPE, default_region="CA", labels=["10", "20"])
    assert (facts.agent_label, facts.caller_label, facts.direction) == ("10", "20", "outbound")


@pytest.mark.parametrize("data", [
    b"<recording>", b"not xml", b"<other/>",
    b'<!DOCTYPE r [<!ENTITY a "aaaa">]><recording>&a;</recording>',
    b"<recording>" + b"<x>" * 40 + b"</x>" * 40 + b"</recording>",
    b"<recording>" + b"<x/>" * 5000 + b"</recording>",
    b"<recording>" + b" " * 70000 + b"</recording>",
])
def test_metadata_parser_refuses_hostile_or_broken_xml(data: bytes) -> None:
    with pytest.raises(MetadataError):
        parse_recording_metadata(data)


def test_metadata_parser_fuzz_never_raises_anything_but_metadata_errors() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        data = bytearray(RFC7865)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data))
            data[pos : pos + rng.randint(0, 8)] = rng.randbytes(rng.randint(0, 4))
        try:
            meta = parse_recording_metadata(bytes(data))
            derive_facts(meta, scope=SCOPE, default_region="CA", labels=["1", "2"])
        except MetadataError:
            pass


def test_g711_tables_decode_known_values() -> None:
    assert ULAW[0xFF] == 0 and ULAW[0x80] == 32124 and ULAW[0x00] == -32124
    assert ALAW[0xD5] == 8 and ALAW[0x55] == -8 and ALAW[0xAA] == 32256


def _rtp(seq: int, ts: int, ssrc: int = 1, pt: int = 0, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack(">BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def test_rtp_parser_honours_csrc_extension_and_padding() -> None:
    pkt = struct.pack(">BBHII", 0xB1, 0, 1, 2, 3) + b"CSRC" + b"\xbe\xde\x00\x01" + b"EXT!" + b"audio" + b"\x00\x00\x03"
    assert parse_rtp(pkt).payload == b"audio"
    with pytest.raises(RtpError):
        parse_rtp(b"\x00" * 12)


def test_stream_timer_handles_wrap_reorder_duplicates_loss_and_telephone_events() -> None:
    codec = plan_answer(parse_sdp(b"v=0\nm=audio 1 RTP/AVP 0\n"), [2])[0].codecs
    timer = StreamTimer(codec, 8000)
    seqs = [65534, 65535, 1, 0, 0, 3]  # wrap, reorder, duplicate, sequence 2 lost
    positions = []
    for seq in seqs:
        ext = seq if seq > 60000 else seq + 65536
        placed = timer.on_packet(parse_rtp(_rtp(seq, (ext - 65534) * 160 + (1 << 32) - 320)), 1000)
        positions.append(placed[0] if placed else None)
    assert positions == [1000, 1160, 1480, 1320, None, 1800]
    assert timer.stats.duplicates == 1 and timer.stats.lost == 1
    assert timer.on_packet(parse_rtp(_rtp(4, 0, pt=101, payload=b"\x01\x80\x00\xa0")), 1000) is None
    assert timer.stats.ignored == 1


def test_new_ssrc_starts_a_new_segment_at_its_arrival_time() -> None:
    codec = plan_answer(parse_sdp(b"v=0\nm=audio 1 RTP/AVP 0\n"), [2])[0].codecs
    timer = StreamTimer(codec, 8000)
    timer.on_packet(parse_rtp(_rtp(1, 1000, ssrc=1)), 0)
    placed = timer.on_packet(parse_rtp(_rtp(77, 999999, ssrc=2)), 8000)
    assert placed is not None and placed[0] == 8000 and timer.stats.ssrc_changes == 1


def test_mixer_writes_silence_for_gaps_and_keeps_memory_bounded() -> None:
    out: list[bytes] = []
    mixer = Mixer(8000, out.append, window_seconds=0.5)
    mixer.put(0, 0, np.full(160, 100, dtype=np.int16))
    mixer.put(1, 80000, np.full(160, 200, dtype=np.int16))  # 10 s later: forces flushing, never buffering 10 s
    assert mixer._buf.shape[0] == 4000
    total = mixer.finish()
    pcm = np.frombuffer(b"".join(out), dtype=np.int16).reshape(-1, 2)
    assert total == len(pcm) == 80160
    assert (pcm[:160, 0] == 100).all() and (pcm[160:80000] == 0).all() and (pcm[80000:, 1] == 200).all()
    mixer.put(0, 10, np.ones(5, dtype=np.int16))  # too late: counted, dropped
    assert mixer.late_samples == 5
