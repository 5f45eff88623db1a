"""PIIDetector: finds and redacts personal data and secrets anywhere in a value."""

from __future__ import annotations

import itertools
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple, overload

import phonenumbers

from proctor.errors import ConfigurationError
from proctor.pii._contact import EMAIL_NEEDS, PhoneFinder, find_emails
from proctor.pii._credentials import MAX_TOKEN_LENGTH, SecretFinder
from proctor.pii._finance import CARD_NEEDS, IBAN_NEEDS, find_credit_cards, find_ibans
from proctor.pii._network import IP_NEEDS, find_ip_addresses
from proctor.pii._scan import Needs, ScanText, has_digit
from proctor.pii._ssn import SSN_NEEDS, find_us_ssns
from proctor.pii._walk import Limits, TextWalk, format_path, rebuild, texts
from proctor.pii.backend import PIIBackend
from proctor.pii.kinds import BUILTIN_KINDS, PIIKind
from proctor.pii.match import PIIMatch, PIISpan

__all__ = ["DEFAULT_PHONE_REGIONS", "MAX_DEPTH_LIMIT", "PIIDetector"]

logger = logging.getLogger("proctor.pii")

DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN")
"""Regions whose national formats count as phone numbers (US also covers Canada)."""

MAX_DEPTH_LIMIT = 100
"""The largest ``max_depth`` a detector accepts, and its default (redaction recurses once per level)."""

_Finder = Callable[[ScanText], Iterator[tuple[int, int]]]

# The order in which kinds are looked for (cheap and specific first), which is
# also the order of preference when two kinds claim the same stretch of text.
_ORDER = (
    PIIKind.EMAIL,
    PIIKind.CREDIT_CARD,
    PIIKind.US_SSN,
    PIIKind.IBAN,
    PIIKind.IP_ADDRESS,
    PIIKind.SECRET,
    PIIKind.PHONE,
    PIIKind.PERSON,
    PIIKind.LOCATION,
)
_RANK = {kind: rank for rank, kind in enumerate(_ORDER)}


def _shape(classes: dict[str, str]) -> bytes:
    """A ``bytes.translate`` table: each character of ``classes[symbol]`` becomes ``symbol``, others " "."""
    table = bytearray(b" " * 256)
    for symbol, characters in classes.items():
        for byte in characters.encode("ascii"):
            table[byte] = ord(symbol)
    return bytes(table)


_DIGITS = "0123456789"
_CAPITALS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN_SHAPE = _shape({"a": f"{_CAPITALS}{_CAPITALS.lower()}{_DIGITS}+/_-"})
_NUMERIC_SHAPE = _shape({"n": f"{_DIGITS} .()+-"})
_IBAN_SHAPE = _shape({"A": _CAPITALS, "0": _DIGITS})
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")


class _Recognizer(NamedTuple):
    """A finder and the kind it finds."""

    kind: PIIKind
    find: _Finder
    shortest: int  # it finds nothing in shorter text


_Backends = tuple[tuple[PIIBackend, frozenset[PIIKind]], ...]


class _Plan(NamedTuple):
    """What to run on each string for one set of kinds.

    Recognizers are run only on text that meets their ``Needs``: ``recognizers``
    maps whether a text has an ASCII digit and whether it has an ``@`` to the
    recognizers that may find something in it, and the shortest text any of
    them needs. Backends see every string.
    """

    recognizers: dict[tuple[bool, bool], tuple[tuple[_Recognizer, ...], int]]
    shortest: int  # shorter strings need no scan: nothing in the plan finds anything in them
    backends: _Backends


class PIIDetector:
    """Finds and redacts PII in strings nested anywhere in a value.

    It looks into str, bytes (UTF-8, invalid bytes replaced), mapping keys
    and values, lists, tuples, sets, dataclass fields and ``model_dump()`` of
    pydantic-style models; numbers and other objects are not looked into.
    No model is downloaded: every built-in kind is a pattern plus a check
    (Luhn, mod 97, ``phonenumbers``, ``ipaddress``, entropy). A detector's
    configuration is fixed at construction, and one detector can be shared
    between threads.

    Parameters:
        kinds: the kinds to look for when a call does not say (kinds or their
            names); default: every built-in kind plus every backend's kinds.
        phone_regions: ISO 3166 region codes whose national number formats
            count as phone numbers (numbers starting with ``+`` count in any
            region). More regions find more numbers and more false positives.
        entropy_threshold: the least Shannon entropy, in bits per character,
            of a generic secret token (one without a provider prefix).
        min_token_length: the shortest generic secret token, at most
            ``MAX_TOKEN_LENGTH`` (256); longer runs are taken for data.
        max_depth: values inside more than this many containers are not
            scanned (0 looks only at the value itself), at most
            ``MAX_DEPTH_LIMIT``, which is also the default.
        max_chars: the most characters scanned in one call, over all strings
            and keys (default 4 MiB, 4,194,304); the string crossing the limit
            is scanned up to it. As the scan is linear, this bounds the time
            one call takes (``bench/pii.py`` measures it; text packed with
            PII is the slowest, since each match is checked).
        backends: further detectors, such as a NER model for ``person`` and
            ``location``, run on each string after the built-in ones.

    What the limits keep from being scanned never passes for clean:
    ``contains`` counts it as PII (and logs why), ``redact`` replaces it with
    ``UNSCANNED``. Only ``find`` leaves it out, silently.

    Raises ``ConfigurationError`` for an unknown kind, a kind that nothing
    detects, an unknown region or a limit out of range.
    """

    def __init__(
        self,
        kinds: Iterable[PIIKind | str] | None = None,
        *,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        entropy_threshold: float = 3.5,
        min_token_length: int = 20,
        max_depth: int = MAX_DEPTH_LIMIT,
        max_chars: int = 4_194_304,
        backends: Sequence[PIIBackend] = (),
    ) -> None:
        if isinstance(phone_regions, str) or not phone_regions:
            raise ConfigurationError(
                f"phone_regions must be a non-empty list such as ['US'], not {phone_regions!r}"
            )
        unknown_regions = [r for r in phone_regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown_regions:
            raise ConfigurationError(
                f"phone_regions has codes phonenumbers does not know: {unknown_regions!r}; "
                "use ISO 3166 codes in capitals such as 'US', 'GB'"
            )
        if not (math.isfinite(entropy_threshold) and entropy_threshold >= 0):
            raise ConfigurationError(f"entropy_threshold must be a number >= 0, not {entropy_threshold!r}")
        if not 1 <= min_token_length <= MAX_TOKEN_LENGTH:
            raise ConfigurationError(
                f"min_token_length must be between 1 and {MAX_TOKEN_LENGTH}, not {min_token_length!r}"
            )
        if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
            raise ConfigurationError(f"max_depth must be between 0 and {MAX_DEPTH_LIMIT}, not {max_depth!r}")
        if max_chars < 1:
            raise ConfigurationError(f"max_chars must be at least 1, not {max_chars!r}")
        self._phone_regions = tuple(phone_regions)
        self._entropy_threshold = entropy_threshold
        self._min_token_length = min_token_length
        self._limits = Limits(max_depth=max_depth, max_chars=max_chars)
        self._backends = tuple(backends)
        secrets = SecretFinder(entropy_threshold, min_token_length)
        phones = PhoneFinder(self._phone_regions)
        self._finders: dict[PIIKind, tuple[_Finder, Needs]] = {
            PIIKind.EMAIL: (find_emails, EMAIL_NEEDS),
            PIIKind.CREDIT_CARD: (find_credit_cards, CARD_NEEDS),
            PIIKind.US_SSN: (find_us_ssns, SSN_NEEDS),
            PIIKind.IBAN: (find_ibans, IBAN_NEEDS),
            PIIKind.IP_ADDRESS: (find_ip_addresses, IP_NEEDS),
            PIIKind.SECRET: (secrets, secrets.needs),
            PIIKind.PHONE: (phones, phones.needs),
        }
        self._available = BUILTIN_KINDS.union(*(backend.kinds for backend in self._backends))
        self._kinds = self._available if kinds is None else self._parse_kinds(kinds)
        self._plan = self._make_plan(self._kinds)
        self._plans = {self._kinds: self._plan}  # by kinds asked for
        self._token_run = b"a" * secrets.needs.shortest

    @property
    def kinds(self) -> frozenset[PIIKind]:
        """The kinds looked for when a call does not say."""
        return self._kinds

    def contains(self, value: object, kinds: Iterable[PIIKind | str] | None = None) -> bool:
        """Whether any of ``kinds`` (default: the detector's) occurs anywhere in ``value``.

        Fails closed: True also when part of ``value`` could not be scanned
        (past ``max_chars`` or ``max_depth``, a model that cannot be read),
        with a warning on the ``proctor.pii`` logger saying why. A container
        met again (a cycle, a shared reference) is scanned once. Stops at the
        first match. Raises ``ConfigurationError`` for a kind that is unknown
        or that nothing in this detector finds.
        """
        plan = self._plan_for(kinds)
        if type(value) is str and len(value) <= self._limits.max_chars:  # the common case, inline
            return len(value) >= plan.shortest and any(True for _ in self._spans(value, plan))
        walk = TextWalk(value, self._limits, plan.shortest, once=True)
        for _, text, _ in walk:
            if walk.skipped is not None:  # the answer is True now, whatever the rest holds
                break
            for _ in self._spans(text, plan):
                return True
        if walk.skipped is None:
            return False
        logger.warning(
            "not scanned in full, so counted as containing PII: %s; PIIDetector(max_chars=..., "
            "max_depth=...) sets the limits",
            walk.skipped,
        )
        return True

    def find(self, value: object, kinds: Iterable[PIIKind | str] | None = None) -> list[PIIMatch]:
        """Every match of ``kinds`` (default: the detector's) in ``value``.

        Matches come string by string, depth first in the value's order, and
        by position within a string. Each stretch of text is reported once:
        where matches overlap, the one starting first wins, then the longest,
        then the first of email, credit_card, us_ssn, iban, ip_address,
        secret, phone, person, location.
        """
        plan = self._plan_for(kinds)
        matches: list[PIIMatch] = []
        for path, text, in_key in texts(value, self._limits, plan.shortest):
            for span in _resolve(list(self._spans(text, plan))):
                matches.append(
                    PIIMatch(
                        kind=span.kind,
                        path=format_path(path),
                        start=span.start,
                        end=span.end,
                        text=text[span.start : span.end],
                        in_key=in_key,
                    )
                )
        return matches

    @overload
    def redact(
        self, value: str, kinds: Iterable[PIIKind | str] | None = None
    ) -> tuple[str, frozenset[PIIKind]]: ...

    @overload
    def redact(
        self, value: object, kinds: Iterable[PIIKind | str] | None = None
    ) -> tuple[object, frozenset[PIIKind]]: ...

    def redact(
        self, value: object, kinds: Iterable[PIIKind | str] | None = None
    ) -> tuple[object, frozenset[PIIKind]]:
        """A copy of ``value`` with every match replaced, and the kinds replaced.

        Each match (as ``find`` reports them) becomes ``kind.marker``, such as
        ``[REDACTED:email]``; ``value`` itself is not changed. The copy fails
        closed: text the limits kept from being scanned becomes
        ``[UNSCANNED]`` (the string crossing ``max_chars`` keeps its scanned
        part), and a container recurring inside itself becomes ``[CYCLE]``.

        Containers come back new: mappings and models as ``dict``, lists as
        lists, tuples as tuples (named tuples keep their class), sets as sets,
        dataclass instances as copies of their class. Strings stay strings and
        bytes stay bytes. Numbers and objects that are not looked into are
        kept, not copied. Mapping keys are redacted too: keys that become
        equal collapse into one entry (the last one wins).
        """
        plan = self._plan_for(kinds)
        found: set[PIIKind] = set()

        def redact_text(text: str) -> str:
            spans = list(self._spans(text, plan))
            if not spans:
                return text
            spans = _resolve(spans)
            parts: list[str] = []
            position = 0
            for span in spans:
                parts += (text[position : span.start], span.kind.marker)
                position = span.end
                found.add(span.kind)
            parts.append(text[position:])
            return "".join(parts)

        return rebuild(value, self._limits, redact_text, plan.shortest), frozenset(found)

    def clean_json(self, text: str) -> bool:
        """Whether ``redact`` would change nothing in the value whose JSON is ``text``, judged from ``text``.

        ``text`` is what ``json.dumps(value, ensure_ascii=False)`` writes (any separators) of a value
        made of dicts, lists, tuples, strings, numbers, booleans and None. True only when nothing in
        it can be a match of the built-in kinds and the value is within the limits; False when a
        scan is needed (always, with backends). A quick, conservative test: many values it sends
        to a scan hold nothing.
        """
        if self._plan.backends or len(text) > self._limits.max_chars:
            return False
        if text.count("{") + text.count("[") > self._limits.max_depth:  # as many containers at most
            return False
        # What a string must hold for a built-in recognizer to find anything in it, looked for in
        # one byte per character (non-ASCII ones "?"): an "@" (e-mail), a PEM header, a run of
        # token characters (secrets), seven digits and separators (cards, SSNs, phones and IPv4 are
        # looked for only inside such a run), an IBAN's country and check digits, an IPv6 hint.
        # JSON escapes none of these characters: the JSON of a string holds what the string holds.
        raw = text.encode("ascii", "replace")
        return not (
            b"@" in raw
            or b"-----BEGIN" in raw
            or self._token_run in raw.translate(_TOKEN_SHAPE)
            or b"nnnnnnn" in raw.translate(_NUMERIC_SHAPE)
            or b"AA00" in raw.translate(_IBAN_SHAPE)
            or _IPV6_HINT.search(text) is not None
        )

    def __repr__(self) -> str:
        return (
            f"PIIDetector(kinds={sorted(self._kinds)!r}, phone_regions={list(self._phone_regions)!r}, "
            f"entropy_threshold={self._entropy_threshold!r}, min_token_length={self._min_token_length!r}, "
            f"max_depth={self._limits.max_depth!r}, max_chars={self._limits.max_chars!r}, "
            f"backends={list(self._backends)!r})"
        )

    def _spans(self, text: str, plan: _Plan) -> Iterable[PIISpan]:
        """The spans of the plan's kinds in ``text``, found lazily; ``()`` if nothing can find any."""
        recognizers, shortest = plan.recognizers[has_digit(text), "@" in text]
        if len(text) < shortest:
            recognizers = ()
        if not (recognizers or plan.backends):
            return ()
        return self._found(text, recognizers, plan.backends)

    @staticmethod
    def _found(text: str, recognizers: tuple[_Recognizer, ...], backends: _Backends) -> Iterator[PIISpan]:
        scan = ScanText(text)
        size = len(text)
        for kind, find, shortest in recognizers:
            if size >= shortest:
                for start, end in find(scan):
                    yield PIISpan(kind, start, end)
        for backend, wanted in backends:
            for kind, start, end in backend.scan(text, wanted):
                if kind in wanted and 0 <= start < end <= len(text):
                    yield PIISpan(PIIKind(kind), start, end)

    def _plan_for(self, kinds: Iterable[PIIKind | str] | None) -> _Plan:
        if kinds is None:
            return self._plan
        parsed = self._parse_kinds(kinds)
        plan = self._plans.get(parsed)
        if plan is None:  # threads that race here make equal plans
            plan = self._plans[parsed] = self._make_plan(parsed)
        return plan

    def _make_plan(self, kinds: frozenset[PIIKind]) -> _Plan:
        chosen = [(kind, *self._finders[kind]) for kind in _ORDER if kind in kinds and kind in self._finders]
        recognizers = {}
        for digit, at in itertools.product((False, True), repeat=2):
            usable = tuple(
                _Recognizer(kind, find, needs.shortest)
                for kind, find, needs in chosen
                if (digit or not needs.digit) and (at or not needs.at)
            )
            recognizers[digit, at] = usable, min((r.shortest for r in usable), default=sys.maxsize)
        backends = tuple(
            (backend, kinds & backend.kinds) for backend in self._backends if kinds & backend.kinds
        )
        return _Plan(recognizers, 0 if backends else recognizers[True, True][1], backends)

    def _parse_kinds(self, kinds: Iterable[PIIKind | str]) -> frozenset[PIIKind]:
        names = [kinds] if isinstance(kinds, str) else list(kinds)
        known = ", ".join(kind.value for kind in _ORDER)
        parsed: set[PIIKind] = set()
        for name in names:
            try:
                kind = PIIKind(name)
            except ValueError:
                raise ConfigurationError(f"unknown PII kind {name!r}; known kinds: {known}") from None
            if kind not in self._available:
                raise ConfigurationError(
                    f"no detector here finds {kind.value!r}: it needs a backend that does "
                    f"(PIIDetector(backends=[...])), such as a NER model"
                )
            parsed.add(kind)
        return frozenset(parsed)


def _resolve(spans: list[PIISpan]) -> list[PIISpan]:
    """The spans that do not overlap: leftmost first, then longest, then by kind order."""
    if len(spans) < 2:
        return spans
    kept: list[PIISpan] = []
    reach = 0
    for span in sorted(spans, key=lambda s: (s.start, s.start - s.end, _RANK[s.kind])):
        if span.start >= reach:
            kept.append(span)
            reach = span.end
    return kept
