"""Decrypting one SRTP stream (SDES keys from the SDP offer) with libsrtp through pylibsrtp.

Why libsrtp and not our own AES-CM: it is the reference implementation every SBC interoperates
with, and it does the parts that are easy to get subtly wrong (rollover counter on sequence wrap,
the replay window, key derivation). Packets that fail authentication or replay checks are dropped
and counted, never decoded: a forged or corrupted packet cannot put noise into a recording.

The master key lives only in this object (and in the ``SrtpAgreement`` it came from, ``repr=False``);
it is never logged, never written to the catalog, never part of an error message.
"""

from __future__ import annotations

import hmac
from typing import Final

import pylibsrtp

from callvault.capture.siprec.rtp import StreamStats
from callvault.capture.siprec.sdp import SrtpAgreement

PROFILES: Final = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}
_REPLAY_WORDS: Final = ("replay",)


class SrtpReceiver:
    """Unprotects the SRC's packets for one stream; a new one is made when a re-offer changes the key."""

    __slots__ = ("_key", "_session", "stats")

    def __init__(self, agreement: SrtpAgreement, stats: StreamStats) -> None:
        policy = pylibsrtp.Policy(key=agreement.remote_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                  srtp_profile=PROFILES[agreement.suite])
        # A receiver must accept any SSRC the SRC picks (it changes on transfer/failover).
        self._session = pylibsrtp.Session(policy=policy)
        self._key = agreement.suite.encode() + b":" + agreement.remote_key
        self.stats = stats

    def same_key(self, agreement: SrtpAgreement) -> bool:
        """Whether a re-offer kept suite and key (then this session, with its rollover counter, stays)."""
        return hmac.compare_digest(self._key, agreement.suite.encode() + b":" + agreement.remote_key)

    def __repr__(self) -> str:
        return "SrtpReceiver(<key hidden>)"

    def unprotect(self, data: bytes) -> bytes | None:
        """The plain RTP packet, or None (counted) when libsrtp refuses it."""
        try:
            return bytes(self._session.unprotect(data))
        except pylibsrtp.Error as exc:
            if any(word in str(exc).lower() for word in _REPLAY_WORDS):
                self.stats.srtp_replays += 1
            else:
                self.stats.srtp_auth_failures += 1
            return None
