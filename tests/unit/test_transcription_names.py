"""Names said after a cue are found and masked; capitalised words without a cue are left alone."""

from __future__ import annotations

from callvault.transcription import redaction
from callvault.transcription.document import TranscriptDoc, TSegment, TWord


def masked(text: str) -> str:
    words = [TWord(w, i * 0.3, i * 0.3 + 0.25) for i, w in enumerate(text.split())]
    seg = TSegment("caller", 0, len(words) * 0.3, words)
    seg.rebuild_text()
    doc = TranscriptDoc("test", ["caller"], [seg])
    return redaction.apply(doc, redaction.find(doc)).segments[0].text


def test_a_name_after_my_name_is_is_masked() -> None:
    assert masked("Hi, my name is Jane Doe and I need help") == "Hi, my name is [name] and I need help"


def test_the_agents_name_before_speaking_is_masked() -> None:
    assert masked("Thanks for calling Acme Support, Sarah speaking.") == \
        "Thanks for calling Acme Support, [name] speaking."


def test_a_title_and_surname_are_masked_together() -> None:
    assert masked("this is Mr. Patel, calling back") == "this is [name] calling back"


def test_capitalised_words_without_a_cue_are_not_taken_for_names() -> None:
    assert masked("I am calling about my Acme Router on Monday") == "I am calling about my Acme Router on Monday"
    assert masked("Hello, this is the billing team") == "Hello, this is the billing team"


def test_names_sit_alongside_phone_numbers_in_one_redaction() -> None:
    assert masked("my name is Jane and my number is 416 555 0142") == \
        "my name is [name] and my number is [phone number]"
