"""A SIPREC SRC dialog over the raw TCP client (``StreamSipClient``): INVITE, ACK, re-offers, BYE.

The admission and timer tests need calls whose exact SDP they choose (paused from the start,
``c=0.0.0.0``, only an unsupported codec, session-timer headers) and whose media they start and stop
themselves, which sipp's scenarios cannot vary per call.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.siprec.support import HELPER, StreamSipClient, free_port

METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="S1=="/>
  <participant participant_id="PC"><nameID aor="sip:+16135550100@carrier.example"/></participant>
  <participant participant_id="PA"><nameID aor="sip:2001@pbx.example"/></participant>
  <stream stream_id="T1" session_id="S1=="><label>1</label></stream>
  <stream stream_id="T2" session_id="S1=="><label>2</label></stream>
  <participantstreamassoc participant_id="PA"><send>T1</send></participantstreamassoc>
  <participantstreamassoc participant_id="PC"><send>T2</send></participantstreamassoc>
</recording>
"""


def offer(*, direction: str = "sendonly", address: str = "127.0.0.1", formats: str = "0",
          rtpmap: str = "0 PCMU/8000", version: int = 1) -> str:
    """A two-stream SIPREC SDP offer (labels 1 and 2)."""
    media = free_port()
    streams = "".join(f"m=audio {media + 2 * i} RTP/AVP {formats}\na=rtpmap:{rtpmap}\na={direction}\na=label:{i + 1}\n"
                      for i in range(2))
    return f"v=0\no=- 1 {version} IN IP4 127.0.0.1\ns=-\nc=IN IP4 {address}\nt=0 0\n{streams}"


def multipart(sdp: str) -> str:
    return (f"--b1\nContent-Type: application/sdp\n\n{sdp}--b1\nContent-Type: application/rs-metadata+xml\n"
            f"Content-Disposition: recording-session\n\n{METADATA}--b1--\n")


class SrcCall:
    """One recorded call placed by an SRC over its own TCP connection."""

    def __init__(self, port: int) -> None:
        self.client = StreamSipClient(port)
        self.to_tag = ""
        self.cseq = 1
        self.ports: list[str] = []

    def invite(self, sdp: str, *, extra: str = "") -> tuple[int, str, str]:
        """Send the INVITE, return the final response (status, head, body); ACK a 200."""
        self.client.request("INVITE", 1, content_type="multipart/mixed;boundary=b1", body=multipart(sdp),
                            extra="Require: siprec\r\nContact: <sip:src@127.0.0.1;transport=tcp>;+sip.src\r\n" + extra)
        status, head, body = self.client.final_response()
        tag = re.search(r"(?im)^to:.*(;tag=[^;\s]+)", head)
        self.to_tag = tag.group(1) if tag else ""
        self.client.request("ACK", 1, to_tag=self.to_tag)
        self.ports = re.findall(r"m=audio (\d+) RTP/AVP", body)
        return status, head, body

    def in_dialog(self, method: str, *, sdp: str = "", extra: str = "") -> tuple[int, str, str]:
        self.cseq += 1
        self.client.request(method, self.cseq, to_tag=self.to_tag, content_type="application/sdp" if sdp else "",
                            body=sdp, extra=extra)
        status, head, body = self.client.final_response()
        if method == "INVITE":
            self.client.request("ACK", self.cseq, to_tag=self.to_tag)
        return status, head, body

    def send_media(self, seconds: float) -> None:
        """Two tones (440 Hz on label 1, 1000 Hz on label 2) to the answered ports, then silence."""
        subprocess.run([sys.executable, str(HELPER), "127.0.0.1", self.ports[0], self.ports[1], str(seconds),
                        "440", "1000"], check=True, timeout=60)

    def close(self) -> None:
        self.client.sock.close()


def header(head: str, name: str) -> str | None:
    found = re.search(rf"(?im)^{name}\s*:\s*(.+?)\s*$", head)
    return found.group(1) if found else None
