"""PIIDetector: nested values, paths, limits, redaction, kinds, configuration and backends."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest
from pydantic import BaseModel

from proctor.errors import ConfigurationError
from proctor.pii import (
    BUILTIN_KINDS,
    CYCLE,
    UNSCANNED,
    PIIBackend,
    PIIDetector,
    PIIKind,
    PIIMatch,
    PIISpan,
)

EMAIL = "jane.doe@example.com"
PHONE = "+1 415-555-2671"


@dataclass
class Contact:
    name: str
    email: str
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Frozen:
    email: str


class Point(NamedTuple):
    label: str
    note: str


class Model:
    """Quacks like a pydantic model: only model_dump() is used."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def model_dump(self) -> dict[str, Any]:
        return dict(self.fields)


class BrokenModel:
    def model_dump(self) -> dict[str, Any]:
        raise RuntimeError("cannot dump")


def paths(detector: PIIDetector, value: object) -> list[tuple[str, str, bool]]:
    return [(match.path, match.kind.value, match.in_key) for match in detector.find(value)]


def test_find_reports_kind_path_position_and_text(detector: PIIDetector) -> None:
    text = f"mail {EMAIL} or call {PHONE}"
    assert detector.find({"args": {"query": text}}) == [
        PIIMatch(PIIKind.EMAIL, "args.query", 5, 5 + len(EMAIL), EMAIL),
        PIIMatch(PIIKind.PHONE, "args.query", text.index("+"), len(text), PHONE),
    ]


def test_a_match_repr_leaves_the_text_out(detector: PIIDetector) -> None:
    (match,) = detector.find(EMAIL)
    assert EMAIL not in repr(match)
    assert "email" in repr(match)


def test_paths_into_every_container(detector: PIIDetector) -> None:
    value = [
        "nothing here",
        {"to": EMAIL, "first name": EMAIL, 3: EMAIL, ("a", 1): EMAIL},
        (EMAIL,),
        {EMAIL},
        Contact("Jane", EMAIL, tags=["x", EMAIL]),
        Model(user={"email": EMAIL}),
        Point("p", EMAIL),
    ]
    assert paths(PIIDetector(), value) == [
        ("[1].to", "email", False),
        ("[1]['first name']", "email", False),
        ("[1][3]", "email", False),
        ("[1][('a', 1)]", "email", False),
        ("[2][0]", "email", False),
        ("[3][*]", "email", False),
        ("[4].email", "email", False),
        ("[4].tags[1]", "email", False),
        ("[5].user.email", "email", False),
        ("[6][1]", "email", False),
    ]
    assert detector.find(EMAIL)[0].path == ""


def test_mapping_keys_are_scanned(detector: PIIDetector) -> None:
    assert paths(detector, {"users": {EMAIL: {"role": "admin"}}}) == [(f"users['{EMAIL}']", "email", True)]
    assert detector.contains({EMAIL: 1})


def test_bytes_are_decoded_with_replacement(detector: PIIDetector) -> None:
    raw = b"\xff\xfe mail " + EMAIL.encode() + b" \xc3"
    (match,) = detector.find({"body": raw})
    assert (match.path, match.text, match.start) == ("body", EMAIL, 8)
    assert detector.contains(bytearray(raw))


def test_numbers_and_unknown_objects_are_not_looked_into(detector: PIIDetector) -> None:
    class Opaque:
        def __init__(self) -> None:
            self.email = EMAIL

    assert not detector.contains([4111111111111111, 4.5, None, True, Opaque(), Contact])
    assert not detector.contains(iter([EMAIL]))  # iterators are never consumed


def test_contains_agrees_with_find(detector: PIIDetector) -> None:
    values: list[object] = [[], "", "plain words", {"k": [EMAIL]}, (1, 2, PHONE)]
    for value in values:
        assert detector.contains(value) == bool(detector.find(value))


def test_kinds_narrow_the_search(detector: PIIDetector) -> None:
    value = {"a": EMAIL, "b": PHONE}
    assert detector.contains(value, kinds=["phone"])
    assert not detector.contains("just " + EMAIL, kinds=["phone", "iban"])
    assert detector.contains(EMAIL, kinds="email")  # one name on its own
    assert detector.contains(EMAIL, kinds=[PIIKind.EMAIL])
    assert not detector.contains(EMAIL, kinds=[])
    assert [m.kind for m in detector.find(value, kinds=["phone"])] == [PIIKind.PHONE]
    only_email = PIIDetector(kinds=["email"])
    assert only_email.kinds == {PIIKind.EMAIL}
    assert not only_email.contains(PHONE)
    assert only_email.contains(PHONE, kinds=["phone"])  # a call may ask for more


def test_overlapping_matches_are_reported_once(detector: PIIDetector) -> None:
    # A valid IBAN whose account part also reads as a (validly grouped) number elsewhere.
    text = "DE89 3704 0044 0532 0130 00"
    assert [m.kind for m in detector.find(text)] == [PIIKind.IBAN]
    # An IPv4 address embedded in an IPv6 one: the longer, earlier match wins.
    assert [(m.kind, m.text) for m in detector.find("::ffff:192.0.2.1")] == [
        (PIIKind.IP_ADDRESS, "::ffff:192.0.2.1")
    ]


def test_redact_replaces_each_match_with_a_marker(detector: PIIDetector) -> None:
    text = f"mail {EMAIL}, call {PHONE}, card 4111 1111 1111 1111."
    redacted, kinds = detector.redact(text)
    assert redacted == "mail [REDACTED:email], call [REDACTED:phone], card [REDACTED:credit_card]."
    assert kinds == {PIIKind.EMAIL, PIIKind.PHONE, PIIKind.CREDIT_CARD}
    assert detector.redact("nothing to see") == ("nothing to see", frozenset())
    assert PIIKind.US_SSN.marker == "[REDACTED:us_ssn]"


def test_redact_copies_deeply_and_leaves_the_input_alone(detector: PIIDetector) -> None:
    shared = ["x"]
    original = {
        "contact": Contact("Jane", EMAIL, tags=[EMAIL]),
        "frozen": Frozen(EMAIL),
        "point": Point("p", EMAIL),
        "set": frozenset({EMAIL, "ok"}),
        "tuple": (EMAIL, 1),
        "ordered": OrderedDict(a=EMAIL),
        "model": Model(email=EMAIL, n=1),
        "raw": EMAIL.encode(),
        "buffer": bytearray(b"clean"),
        "shared": [shared, shared],
        EMAIL: "key",
        "n": 7,
    }
    snapshot = repr(original)
    redacted, kinds = detector.redact(original)
    assert repr(original) == snapshot
    assert kinds == {PIIKind.EMAIL}
    marker = PIIKind.EMAIL.marker
    assert isinstance(redacted, dict)
    assert redacted["contact"] == Contact("Jane", marker, tags=[marker])
    assert redacted["contact"] is not original["contact"]
    assert redacted["frozen"] == Frozen(marker)
    assert redacted["point"] == Point("p", marker)
    assert redacted["set"] == frozenset({marker, "ok"})
    assert redacted["tuple"] == (marker, 1)
    assert redacted["ordered"] == {"a": marker}
    assert redacted["model"] == {"email": marker, "n": 1}  # models come back as their dump
    assert redacted["raw"] == marker.encode()
    assert redacted["buffer"] == bytearray(b"clean")
    assert redacted["buffer"] is not original["buffer"]
    assert redacted["shared"] == [["x"], ["x"]]
    assert redacted["shared"][0] is not shared
    assert redacted[marker] == "key"
    assert redacted["n"] == 7


def test_redacted_keys_that_collide_keep_the_last(detector: PIIDetector) -> None:
    redacted, _ = detector.redact({"a@example.com": 1, "b@example.com": 2})
    assert redacted == {PIIKind.EMAIL.marker: 2}


def test_a_self_referencing_list_ends(detector: PIIDetector) -> None:
    loop: list[object] = ["hello"]
    loop.append(loop)
    loop.append({"again": loop, "mail": EMAIL})
    assert detector.contains(loop)
    assert paths(detector, loop) == [("[2].mail", "email", False)]
    redacted, kinds = detector.redact(loop)
    assert redacted == ["hello", CYCLE, {"again": CYCLE, "mail": PIIKind.EMAIL.marker}]
    assert kinds == {PIIKind.EMAIL}
    itself: list[object] = []
    itself.append(itself)
    assert not detector.contains(itself)
    assert detector.redact(itself) == ([CYCLE], frozenset())


def test_a_cycle_through_a_dataclass_ends(detector: PIIDetector) -> None:
    contact = Contact("Jane", "none")
    contact.tags = [contact]  # type: ignore[list-item]
    assert not detector.contains(contact)
    redacted, _ = detector.redact(contact)
    assert isinstance(redacted, Contact)
    assert redacted.tags == [CYCLE]


def test_values_deeper_than_max_depth_are_skipped_and_redacted_as_unscanned() -> None:
    shallow = PIIDetector(max_depth=2)
    assert shallow.contains({"a": {"b": EMAIL}})  # the string is inside 2 containers
    assert shallow.find({"a": {"b": [EMAIL]}}) == []
    assert shallow.contains({"a": {"b": ["clean"]}})  # not scanned: counts as PII (fails closed)
    redacted, kinds = shallow.redact({"a": {"b": [EMAIL], "c": 5, "d": "ok"}})
    assert redacted == {"a": {"b": [UNSCANNED], "c": 5, "d": "ok"}}
    assert kinds == frozenset()
    assert PIIDetector(max_depth=0).contains(EMAIL)
    assert PIIDetector(max_depth=0).find([EMAIL]) == []
    assert PIIDetector(max_depth=0).contains(["clean"])


def test_a_deeply_nested_value_does_not_crash(detector: PIIDetector) -> None:
    value: object = EMAIL
    for _ in range(10_000):
        value = [value]
    assert detector.contains(value)  # not scanned in full: counts as PII
    assert detector.find(value) == []
    redacted, _ = detector.redact(value)
    depth = 0
    while isinstance(redacted, list):
        (redacted,) = redacted
        depth += 1
    assert (depth, redacted) == (101, UNSCANNED)  # lists at depths 0 to 100 are looked into


def test_max_chars_caps_the_text_scanned() -> None:
    capped = PIIDetector(max_chars=25)
    assert capped.contains(["x" * 5, EMAIL])  # 5 + 20 characters: all scanned
    assert capped.find(["x" * 12, EMAIL]) == []  # the email is cut to "jane.doe@exam"
    assert capped.find(["x" * 25, EMAIL]) == []  # never reached
    assert capped.contains(["x" * 12, EMAIL])  # which contains counts as PII (fails closed)
    assert capped.contains(["x" * 25, "clean"])
    assert not capped.contains(["x" * 25, ""])  # nothing was left out
    redacted, _ = capped.redact(["x" * 12, EMAIL, "more", b"bytes"])
    assert redacted == ["x" * 12, EMAIL[:13] + UNSCANNED, UNSCANNED, UNSCANNED]
    redacted_text, kinds = capped.redact(f"{EMAIL} and then some more text")
    assert redacted_text == PIIKind.EMAIL.marker + " and " + UNSCANNED
    assert kinds == {PIIKind.EMAIL}


def test_a_model_that_cannot_be_dumped_is_not_passed_on(detector: PIIDetector) -> None:
    assert detector.contains(BrokenModel())  # what cannot be read counts as PII
    assert detector.find(BrokenModel()) == []
    assert detector.redact({"m": BrokenModel()})[0] == {"m": UNSCANNED}


class NameBackend:
    """A stand-in NER backend: every capitalised word from a fixed list is a person."""

    kinds = frozenset({PIIKind.PERSON})

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self.calls: list[frozenset[PIIKind]] = []

    def scan(self, text: str, kinds: frozenset[PIIKind]) -> Iterable[PIISpan]:
        self.calls.append(kinds)
        for name in self.names:
            start = text.find(name)
            if start >= 0:
                yield PIISpan(PIIKind.PERSON, start, start + len(name))
        yield PIISpan(PIIKind.LOCATION, 0, 1)  # not asked for: ignored
        yield PIISpan(PIIKind.PERSON, 5, 10_000)  # out of range: ignored


def test_a_backend_adds_kinds() -> None:
    backend = NameBackend(["Alice"])
    checked: PIIBackend = backend
    detector = PIIDetector(backends=[checked])
    assert detector.kinds == BUILTIN_KINDS | {PIIKind.PERSON}
    text = f"Alice wrote from {EMAIL}"
    assert [(m.kind, m.text) for m in detector.find(text)] == [
        (PIIKind.PERSON, "Alice"),
        (PIIKind.EMAIL, EMAIL),
    ]
    assert detector.redact(text)[0] == "[REDACTED:person] wrote from [REDACTED:email]"
    assert detector.contains("Bob and Alice", kinds=["person"])
    assert not detector.contains(EMAIL, kinds=["person"])
    assert backend.calls[-1] == {PIIKind.PERSON}
    calls = len(backend.calls)
    assert detector.contains(EMAIL, kinds=["email"])
    assert len(backend.calls) == calls  # not asked when none of its kinds is wanted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kinds": ["email", "passport"]}, "unknown PII kind 'passport'"),
        ({"kinds": ["person"]}, "no detector here finds 'person'"),
        ({"phone_regions": []}, "phone_regions must be a non-empty list"),
        ({"phone_regions": "US"}, "phone_regions must be a non-empty list"),
        ({"phone_regions": ["US", "XX"]}, "does not know: \\['XX'\\]"),
        ({"entropy_threshold": -1}, "entropy_threshold"),
        ({"entropy_threshold": float("nan")}, "entropy_threshold"),
        ({"min_token_length": 0}, "min_token_length"),
        ({"min_token_length": 257}, "min_token_length"),
        ({"max_depth": -1}, "max_depth"),
        ({"max_depth": 101}, "max_depth"),
        ({"max_chars": 0}, "max_chars"),
    ],
)
def test_bad_configuration_is_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PIIDetector(**kwargs)


def test_a_call_with_an_unknown_kind_is_rejected(detector: PIIDetector) -> None:
    with pytest.raises(ConfigurationError, match="known kinds: email, credit_card"):
        detector.contains("x", kinds=["emails"])
    with pytest.raises(ConfigurationError, match="person"):
        detector.find("x", kinds=["person"])


def test_repr_shows_the_configuration() -> None:
    text = repr(PIIDetector(kinds=["email"], phone_regions=["GB"], max_chars=10))
    assert text.startswith("PIIDetector(kinds=[<PIIKind.EMAIL: 'email'>], phone_regions=['GB'],")
    assert "max_chars=10" in text


def test_the_package_exports_exactly_its_public_names() -> None:
    import proctor.pii

    public = {name for name in dir(proctor.pii) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(proctor.pii, name)).__name__ == "module"}
    assert set(proctor.pii.__all__) == public - modules - {"annotations"}


class Address(BaseModel):
    email: str


class User(BaseModel):
    name: str
    contacts: list[Address]


def test_real_pydantic_models_are_read_through_model_dump(detector: PIIDetector) -> None:
    user = User(name="Jane", contacts=[Address(email=EMAIL)])
    assert paths(detector, {"user": user}) == [("user.contacts[0].email", "email", False)]
    redacted, _ = detector.redact(user)
    assert redacted == {"name": "Jane", "contacts": [{"email": PIIKind.EMAIL.marker}]}
    assert user.contacts[0].email == EMAIL


class HashableModel:
    """A frozen model used as a key: its redacted dump is a dict, which cannot be one."""

    def model_dump(self) -> dict[str, Any]:
        return {"email": EMAIL}

    def __hash__(self) -> int:
        return 1


def test_keys_that_cannot_stay_keys_become_strings(detector: PIIDetector) -> None:
    redacted, kinds = detector.redact({(HashableModel(), 1): "v", frozenset({HashableModel()}): "w"})
    assert redacted == {
        str(({"email": PIIKind.EMAIL.marker}, 1)): "v",
        frozenset({str({"email": PIIKind.EMAIL.marker})}): "w",
    }
    assert kinds == {PIIKind.EMAIL}
