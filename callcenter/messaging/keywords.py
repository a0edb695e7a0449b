"""SMS keywords: opt-out, re-subscribe and numbered answers, however a phone typed them.

Residents type keywords on all kinds of keyboards: upper or lower case, full-width Latin
letters from a Chinese input method (``ＴＤ``), a space between the letters (``Ｔ Ｄ``), a full
stop or an exclamation mark the keyboard added (``TD。``, ``退订！``), or the brackets that
Chinese service messages put around words (``【退订】``). A message is a keyword when, after
Unicode NFKC folding (full-width to ASCII), case folding and removing everything that is not a
letter or a digit, it is exactly one of the words below. A sentence that merely contains a
keyword (``stop by tomorrow?``, ``请问退订以后还能预约吗``) is not one.

Opt-out words:

* Twilio's defaults, which Twilio and the carriers act on themselves (Twilio also answers
  them when Advanced Opt-Out is on, so the hotline sends no reply of its own): STOP, STOPALL,
  UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT. Because CANCEL is one of them, no message
  may ever ask a patient to "reply CANCEL".
* The Chinese convention, which Twilio does not know (the hotline confirms these itself):
  TD, 退订, and the longer forms 退订短信, 短信退订 and 取消订阅. A lone ``T`` (used by some
  senders as "回T退订") is deliberately not an opt-out: it is one stray key away from anything
  and the hotline never advertises it. Neither is 退号 / 取消预约 (cancel an appointment).

Re-subscribe words:

* Twilio's defaults (answered by Twilio): START, UNSTOP, YES.
* Chinese (confirmed by the hotline): 订阅, 恢复订阅, 重新订阅.

Numbered answers: a message that is one or two digits, once surrounding whitespace and
punctuation are removed (``1``, ``１``, ``1。``, ``【2】``), is a choice for the message that
asked for it (see :mod:`callcenter.messaging.replies`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

#: Opt-out words Twilio (and the carriers) handle and answer themselves.
TWILIO_OPT_OUT = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
#: Opt-out words of the Chinese convention; the hotline answers these.
CHINESE_OPT_OUT = frozenset({"td", "退订", "退订短信", "短信退订", "取消订阅"})
#: Re-subscribe words Twilio handles and answers itself.
TWILIO_OPT_IN = frozenset({"start", "unstop", "yes"})
#: Chinese re-subscribe words; the hotline answers these.
CHINESE_OPT_IN = frozenset({"订阅", "恢复订阅", "重新订阅"})

OPT_OUT = TWILIO_OPT_OUT | CHINESE_OPT_OUT
OPT_IN = TWILIO_OPT_IN | CHINESE_OPT_IN
#: Longest keyword, in characters: longer messages are not even folded.
_LONGEST = 40
#: Longest numbered answer, in digits.
MAX_CHOICE_DIGITS = 2


@dataclass(frozen=True)
class Keyword:
    """A recognised keyword message.

    ``word`` is the canonical keyword (``"td"``, ``"stop"``, ``"退订"``);
    ``provider_answers`` is true for Twilio's own words, which Twilio confirms itself.
    """

    kind: Literal["opt_out", "opt_in"]
    word: str
    provider_answers: bool


def fold(body: str) -> str:
    """The message reduced to its letters and digits: NFKC, case-folded, nothing else kept.

    ``"Ｔ Ｄ。"`` and ``"【td】"`` both fold to ``"td"``.
    """
    text = unicodedata.normalize("NFKC", body).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def keyword(body: str) -> Keyword | None:
    """The opt-out or re-subscribe keyword ``body`` consists of, or ``None``."""
    if len(body) > _LONGEST * 8:
        return None
    word = fold(body)
    if len(word) > _LONGEST:
        return None
    if word in OPT_OUT:
        return Keyword("opt_out", word, word in TWILIO_OPT_OUT)
    if word in OPT_IN:
        return Keyword("opt_in", word, word in TWILIO_OPT_IN)
    return None


def _is_filler(ch: str) -> bool:
    """Whitespace, punctuation and symbols: anything that is not a letter or a digit."""
    return not ch.isalnum()


def choice(body: str) -> str | None:
    """The numbered answer ``body`` is (``"1"`` for ``"１。"``), or ``None``.

    Only surrounding whitespace and punctuation are dropped: ``"1 2"`` is not an answer.
    """
    if len(body) > 64:
        return None
    text = unicodedata.normalize("NFKC", body)
    start, end = 0, len(text)
    while start < end and _is_filler(text[start]):
        start += 1
    while end > start and _is_filler(text[end - 1]):
        end -= 1
    core = text[start:end]
    if not core or len(core) > MAX_CHOICE_DIGITS:
        return None
    if not all("0" <= ch <= "9" for ch in core):
        return None
    return core
