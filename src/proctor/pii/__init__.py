"""Built-in detection and redaction of personal data and secrets (``contains_pii``).

::

    from proctor.pii import PIIDetector

    detector = PIIDetector()
    detector.contains({"args": {"to": "jane@example.com"}})  # True
    detector.find(["hi", {"email": "jane@example.com"}])  # [PIIMatch(kind=email, path='[1].email', ...)]
    detector.redact("call +1 415-555-2671")  # ('call [REDACTED:phone]', {PIIKind.PHONE})

Every built-in kind is a linear-time pattern plus a check, so no model is
downloaded; ``PIIBackend`` is the seam for NER kinds (``person``,
``location``) from a library such as Presidio. ``PIIKind`` documents what
each kind matches. Choices about false positives, and what is left out:

- Dates (``2024-01-15``, ``15/01/2024``), dotted quads and bare digit runs are
  never phone numbers: a national number needs separators, and only
  numbers with a leading ``+`` are read in any region.
- ``1.2.3.4`` is an IP address even when a sentence calls it a version:
  the text cannot tell. ``v1.2.3.4``, ``1.2.3.4.5``, loopback and
  unspecified addresses are not. Private ranges (``10.0.0.0/8``) are.
- Nine bare digits are not an SSN (too many order numbers look the same).
- UUIDs, git SHAs and hex digests are not secrets: the generic rule needs
  both capitals and small letters, which hex in one case never has. Hex
  keys and single-case base32 keys are therefore found only with a
  provider prefix. Base64 of a random digest (such as an SRI hash) does
  look like a secret and is reported as one.
- Identifiers and paths (``getUserProfileV2Handler``,
  ``src/app/main_v2``) are not secrets: the generic rule rejects tokens
  that are half word-like. About 7% of random 20-character tokens are
  missed for the same reason, fewer than 2% from 32 characters on.
- A value after ``password=`` or under a ``"password"`` key is not a secret
  unless it looks random: there is no keyword rule.
- Numbers (``int``, ``float``) are not scanned: a card number stored as an
  int is not found.
- Text past ``max_chars`` (4 MiB in one call) or nested deeper than
  ``max_depth`` (100 containers) is not scanned: ``contains`` then answers
  True (it fails closed, and logs why), ``redact`` puts ``[UNSCANNED]`` in its
  place, and ``find`` leaves it out.
- E-mail addresses are ASCII with a dotted domain: ``user@localhost`` and
  internationalised addresses are not found; ``git@github.com`` is.
"""

from __future__ import annotations

from proctor.pii._credentials import MAX_TOKEN_LENGTH
from proctor.pii._walk import CYCLE, UNSCANNED
from proctor.pii.backend import PIIBackend
from proctor.pii.detector import DEFAULT_PHONE_REGIONS, MAX_DEPTH_LIMIT, PIIDetector
from proctor.pii.kinds import BUILTIN_KINDS, PIIKind
from proctor.pii.match import PIIMatch, PIISpan

__all__ = [
    "BUILTIN_KINDS",
    "CYCLE",
    "DEFAULT_PHONE_REGIONS",
    "MAX_DEPTH_LIMIT",
    "MAX_TOKEN_LENGTH",
    "UNSCANNED",
    "PIIBackend",
    "PIIDetector",
    "PIIKind",
    "PIIMatch",
    "PIISpan",
]
