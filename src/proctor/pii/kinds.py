"""The kinds of personal data and secrets that PII detection reports."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BUILTIN_KINDS", "PIIKind"]


class PIIKind(StrEnum):
    """A kind of personal data or secret.

    The value is the name rules use, as in ``contains_pii: [email, phone]``.
    Each member's docstring says what the built-in detector counts as that
    kind; the module docstring of ``proctor.pii`` lists what it leaves out.
    """

    EMAIL = "email"
    """An e-mail address ``local@domain.tld`` (ASCII, a TLD of two letters or more)."""

    PHONE = "phone"
    """A phone number that ``phonenumbers`` finds valid, written with a leading ``+``
    or with separators (``(415) 555-2671``, ``+44 20 7946 0958``); a bare run of
    digits without ``+`` is not a phone number (order numbers look the same)."""

    CREDIT_CARD = "credit_card"
    """A payment card number: 13 to 19 digits, optionally grouped by spaces or
    dashes, starting with 2-6 (the card networks' ranges) and passing the Luhn check."""

    US_SSN = "us_ssn"
    """A US Social Security number written ``AAA-GG-SSSS`` or ``AAA GG SSSS``, with
    an area the SSA issues (not 000, 666 or 900-999), group not 00, serial not
    0000, and not one of the publicly voided numbers. Nine bare digits do not count."""

    IBAN = "iban"
    """An international bank account number in capitals, compact or in groups of
    four, with the length its country uses and a valid mod-97 checksum."""

    IP_ADDRESS = "ip_address"
    """An IPv4 or IPv6 address, other than loopback and unspecified addresses
    (``127.0.0.0/8``, ``::1``, ``0.0.0.0``, ``::``). A dotted quad such as
    ``1.2.3.4`` counts even in a sentence about versions; ``v1.2.3.4`` and longer
    dotted runs (``1.2.3.4.5``) do not."""

    SECRET = "secret"
    """A credential: a token with a known provider prefix (AWS, GitHub, GitLab,
    Stripe, OpenAI/Anthropic ``sk-``, Slack, Google, Hugging Face, npm, SendGrid),
    a JWT, a PEM private key block, or a generic high-entropy token."""

    PERSON = "person"
    """A person's name. Only a plugged-in backend (such as a NER model) finds it."""

    LOCATION = "location"
    """A place or address. Only a plugged-in backend (such as a NER model) finds it."""

    @property
    def marker(self) -> str:
        """What redaction puts in place of a match of this kind: ``[REDACTED:email]``."""
        return f"[REDACTED:{self.value}]"


BUILTIN_KINDS: frozenset[PIIKind] = frozenset(PIIKind) - {PIIKind.PERSON, PIIKind.LOCATION}
"""The kinds the built-in detector finds without any backend."""
