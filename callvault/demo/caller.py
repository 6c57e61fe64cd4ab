"""The demo's caller: a real SIPREC call through the capture server every few minutes.

Why: live monitoring, pause/resume and "personal" act on calls that are being recorded *now*; a demo
with only stored recordings cannot show them (issue 27). ``callvault demo`` starts the capture server
on loopback and this thread beside it. Every ``every`` seconds (start to start; the first soon after
the server answers) it places one call to a demo agent's extension from a demo customer number, with
the demo's speech (``callvault.demo.audio``: espeak-ng voices, tones without it) on both streams, for
``seconds`` seconds, then hangs up. The call then goes the product's whole way: ``active_calls`` (the
live page), recording control, storage, transcription by the background workers.

A demo tool, not a node's state: it holds nothing another node needs, and nothing is lost if it dies.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile

from callvault.demo.audio import render_dialogue
from callvault.demo.src import CallParties, SipError, place_call

log = logging.getLogger("callvault.demo.caller")

DEFAULT_EVERY = 180
"""Seconds between demo calls (``--demo-call-every``); 0 turns them off."""
DEFAULT_SECONDS = 75
"""How long each demo call lasts (``--demo-call-seconds``)."""
FIRST_CALL_AFTER = 5.0
"""Seconds after the capture server first answers before the first call: soon, not at once."""
CONNECT_RETRY = 1.0

CALL_SCRIPT: list[tuple[str, str]] = [
    ("agent", "Thank you for calling customer support, this is {agent}. This call is recorded. How can I help?"),
    ("caller", "Hello, I ordered the Acme Router Pro last week and it still has not arrived."),
    ("agent", "I am sorry about that. Could you give me your order number, please?"),
    ("caller", "Yes, it is four eight one five two."),
    ("agent", "Thank you. I can see the order. It was shipped on November twentieth."),
    ("caller", "The tracking page says it is waiting at the depot since Friday."),
    ("agent", "I see that too. I will ask the courier to deliver it tomorrow morning."),
    ("caller", "That would be great. Can you also send me a confirmation by email?"),
    ("agent", "Of course. You will get it within the hour, with a new tracking number."),
    ("caller", "And if it does not arrive tomorrow, can I get a refund?"),
    ("agent", "Yes. Call us back and we will refund the full amount of one hundred and twenty five dollars."),
    ("caller", "Perfect, thank you for your help."),
    ("agent", "You are welcome. Is there anything else I can do for you today?"),
    ("caller", "No, that is all. Goodbye."),
]


def dialogue(agent_name: str, seconds: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(agent, caller) int16 8 kHz signals of exactly ``seconds``: the script, repeated or cut to fit."""
    turns = [(who, text.format(agent=agent_name)) for who, text in CALL_SCRIPT]
    with tempfile.TemporaryDirectory(prefix="callvault-demo-call-") as tmp:
        wav = Path(tmp) / "call.wav"
        render_dialogue(turns, wav, seed=seed)
        stereo, _rate = soundfile.read(str(wav), dtype="int16", always_2d=True)
    total = max(1, int(seconds * 8000))
    reps = -(-total // len(stereo))
    looped = np.tile(stereo, (reps, 1))[:total]
    return looped[:, 1].copy(), looped[:, 0].copy()  # render_dialogue: channel 0 the caller, 1 the agent


class DemoCaller:
    """The thread that places the demo calls (see the module docstring); ``stop`` ends it, and a call in
    progress hangs up at once."""

    def __init__(self, host: str, port: int, *, agents: Sequence[tuple[str, str]], every: float = DEFAULT_EVERY,
                 seconds: float = DEFAULT_SECONDS, dialled_number: str | None = None,
                 announcement_version: str, announce: Callable[[str], None] = print) -> None:
        if not agents:
            raise ValueError("the demo caller needs at least one (name, extension) agent")
        self.host, self.port = host, port
        self.agents = list(agents)
        self.every, self.seconds = every, seconds
        self.dialled_number = dialled_number
        self.announcement_version = announcement_version
        self._announce = announce
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-caller", daemon=True)
        self.placed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _wait_for_server(self) -> bool:
        """Wait until the capture server accepts connections; False when stopped first."""
        while not self._stop.is_set():
            try:
                with socket.create_connection((self.host, self.port), timeout=CONNECT_RETRY):
                    return True
            except OSError:
                self._stop.wait(CONNECT_RETRY)
        return False

    def _run(self) -> None:
        if not self._wait_for_server() or self._stop.wait(FIRST_CALL_AFTER):
            return
        number = 0
        while not self._stop.is_set():
            started = time.monotonic()
            self._one_call(number)
            number += 1
            if self._stop.wait(max(0.0, self.every - (time.monotonic() - started))):
                return

    def _one_call(self, number: int) -> None:
        name, extension = self.agents[number % len(self.agents)]
        caller = f"+1416555{190 + number % 10:04d}"
        parties = CallParties(extension=extension, agent_name=name.title(), caller_number=caller,
                              dialled_number=self.dialled_number, announced_at=datetime.now(UTC),
                              announcement_version=self.announcement_version)
        try:
            audio = dialogue(name.title(), self.seconds, seed=number)
            self._announce(f"demo call from {caller} to {name} (extension {extension}) for "
                           f"{self.seconds:g} s: watch it on the live page")
            call_id = place_call(self.host, self.port, parties, audio, stop=self._stop)
        except (OSError, SipError) as exc:
            self._announce(f"demo call to {name} failed: {exc}")
            log.warning("demo call failed", extra={"error": str(exc)})
            return
        self.placed += 1
        self._announce(f"demo call {call_id} ended; its recording (and transcript) follow")


def free_loopback_port() -> int:
    """A loopback port free for both UDP and TCP right now (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                    tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free loopback port for the demo's SIPREC server")
