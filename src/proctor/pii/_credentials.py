"""Recognizer of credentials: provider API keys, JWTs, PEM private keys, random tokens.

One pass (``bytes.translate`` and ``bytes.find``) finds the runs of token
characters (``[A-Za-z0-9+/_-]``) of ``min(min_token_length, 15)`` or more;
provider patterns are then matched only at the start of a run (or just after
a ``/`` or ``+`` in it), and the generic test looks at whole runs. A PEM
block is delimited with ``str.find`` from where the previous block ended.
Every loop in a pattern runs over a class the next item cannot match, or is
bounded, so all of it is linear time.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

from proctor.pii._scan import Needs, ScanText

__all__ = ["MAX_TOKEN_LENGTH", "SecretFinder"]

MAX_TOKEN_LENGTH = 256
"""Longer runs of token characters are data (base64 files, images), not generic secrets."""

# Matched where a run of token characters starts, so no lookbehind.
_PROVIDER_TOKEN = re.compile(
    r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key ID
    r"|gh[pousr]_[A-Za-z0-9]{36,251}"  # GitHub classic, OAuth, app, refresh tokens
    r"|github_pat_[A-Za-z0-9_]{22,244}"  # GitHub fine-grained token
    r"|glpat-[A-Za-z0-9_\-]{20,250}"  # GitLab personal access token
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,247}"  # Stripe secret and restricted keys
    r"|whsec_[A-Za-z0-9+/]{24,250}"  # Stripe webhook secret
    r"|sk-[A-Za-z0-9_\-]{20,253}"  # OpenAI, Anthropic (sk-ant-), and look-alikes
    r"|xox[abposr]-[A-Za-z0-9\-]{10,251}"  # Slack tokens
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API key
    r"|hf_[A-Za-z0-9]{30,253}"  # Hugging Face token
    r"|npm_[A-Za-z0-9]{36}"  # npm token
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"  # JWT (the header starts {")
)
_PROVIDER_FIRST = frozenset("Agsrwxhne")  # the first characters of the patterns above
_MIN_PROVIDER_LENGTH = 15  # the shortest run a provider pattern starts (xoxb- and 10 more)
_PUBLIC_KEY_PREFIXES = ("pk_live_", "pk_test_")  # Stripe publishable keys are meant to be public
# Keys whose first run is not where they start: the run is found, then the pattern
# is matched at the prefix (SG.<22>.<43>, and the path of a Slack webhook URL).
_SENDGRID_PREFIX = "SG."
_SENDGRID = re.compile(r"(?<![A-Za-z0-9_\-])SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}")
_SLACK_WEBHOOK_PREFIX = "https://hooks.slack."
_SLACK_WEBHOOK = re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,200}")
# A / or + followed by the first character of a key.
_INNER_KEY_START = re.compile(rf"[/+](?=[{''.join(sorted(_PROVIDER_FIRST))}])")
_TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_TOKEN_SHAPE = bytes(ord("a") if byte in _TOKEN_CHARS else ord(" ") for byte in range(256))
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]{1,40}-----")
_PEM_END = "-----END"
_DIGIT = re.compile(r"[0-9]")
_WORD = re.compile(r"[A-Z]?[a-z]{3,}")


class SecretFinder:
    """Finds credentials; generic tokens must pass the thresholds given.

    A generic token is a run of ``[A-Za-z0-9+/_-]`` at least
    ``min_token_length`` and at most ``MAX_TOKEN_LENGTH`` long, with a digit,
    a capital and a small letter (so hex digests, UUIDs and git SHAs, which are
    single-case, never count), a Shannon entropy of at least
    ``entropy_threshold`` bits per character, and less than half of it in
    word-like runs (``Profile``, ``user``), which keeps identifiers and paths
    such as ``getUserProfileV2Handler`` out. About 93% of random 20-character
    base62 tokens pass, and more than 98% from 32 characters on. Stripe
    publishable keys (``pk_live_``, ``pk_test_``) are public by design and
    never count.
    """

    def __init__(self, entropy_threshold: float, min_token_length: int) -> None:
        self._entropy_threshold = entropy_threshold
        self._min_token_length = min_token_length
        self._shortest_run = b"a" * min(min_token_length, _MIN_PROVIDER_LENGTH)
        # Every match is found from a run, or is a private key block (27 characters
        # or more, from "-----BEGIN PRIVATE KEY-----": longer than any shortest run).
        self.needs = Needs(shortest=len(self._shortest_run))

    def __call__(self, scan: ScanText) -> Iterator[tuple[int, int]]:
        text = scan.text
        blocks = _pem_blocks(text)
        # A private key block is a secret even when cut off (the rest is key
        # material). Certificates and public keys look random but are not
        # secret: no generic token is taken from inside a complete one.
        public = [block for block in blocks if not block.private and block.closed]
        yield from ((block.start, block.end) for block in blocks if block.private)
        next_public = 0  # runs come in order: the first public block not behind this run
        for start, end in self._runs(text):
            token = text[start:end]
            provider = _provider_key(text, start, token)
            if provider is not None:
                yield provider
                continue
            while next_public < len(public) and public[next_public].end <= start:
                next_public += 1
            inside_public = next_public < len(public) and public[next_public].start <= start
            if not inside_public and self._generic_secret(token):
                yield start, end

    def _runs(self, text: str) -> Iterator[tuple[int, int]]:
        """Spans of the runs of token characters long enough to look at."""
        # One byte per character (non-ASCII ones become "?"), token characters
        # as "a" and the others as " ": runs are then found by bytes.find.
        shape = text.encode("ascii", "replace").translate(_TOKEN_SHAPE)
        position = 0
        while (start := shape.find(self._shortest_run, position)) >= 0:
            # find returns the leftmost start, so it is where the run begins.
            end = shape.find(b" ", start + len(self._shortest_run))
            position = len(shape) if end < 0 else end
            yield start, position

    def _generic_secret(self, token: str) -> bool:
        if not self._min_token_length <= len(token) <= MAX_TOKEN_LENGTH:
            return False
        if token.startswith(_PUBLIC_KEY_PREFIXES):
            return False
        if token.lower() == token or token.upper() == token or not _DIGIT.search(token):
            return False  # no capital, no small letter, or no digit
        if _entropy(token) < self._entropy_threshold:
            return False
        wordy = sum(match.end() - match.start() for match in _WORD.finditer(token))
        return wordy * 2 < len(token)


def _provider_key(text: str, start: int, token: str) -> tuple[int, int] | None:
    """The span of a provider key starting with the run ``token`` at ``start``, or after a / or + in it."""
    hook = start - len(_SLACK_WEBHOOK_PREFIX)
    if token.startswith("com/services/") and hook >= 0 and text.startswith(_SLACK_WEBHOOK_PREFIX, hook):
        webhook = _SLACK_WEBHOOK.match(text, hook)
        if webhook is not None:
            return webhook.span()
    sendgrid_start = start - len(_SENDGRID_PREFIX)
    if sendgrid_start >= 0 and text.startswith(_SENDGRID_PREFIX, sendgrid_start):
        sendgrid = _SENDGRID.match(text, sendgrid_start)
        if sendgrid is not None:
            return sendgrid.span()
    if token[0] in _PROVIDER_FIRST and (key := _key_at(text, start)):
        return key
    if "/" in token or "+" in token:
        for inner in _INNER_KEY_START.finditer(token):
            if key := _key_at(text, start + inner.end()):
                return key
    return None


def _key_at(text: str, position: int) -> tuple[int, int] | None:
    """The span of the provider key starting at ``position``, if one does."""
    key = _PROVIDER_TOKEN.match(text, position)
    if key is None:
        return None
    # sk- also starts kebab-case words; keys have digits.
    if key.group().startswith("sk-") and not _DIGIT.search(key.group(), 3):
        return None
    return key.span()


class _PemBlock(NamedTuple):
    start: int
    end: int
    private: bool  # a private key, not a certificate or public key
    closed: bool  # it has an END line


def _pem_blocks(text: str) -> list[_PemBlock]:
    """PEM blocks, from BEGIN to the end of END; an unterminated block runs to the end of the text."""
    if "-----BEGIN" not in text:
        return []
    blocks: list[_PemBlock] = []
    position = 0
    while begin := _PEM_BEGIN.search(text, position):
        end_line = text.find(_PEM_END, begin.end())
        close = -1 if end_line < 0 else text.find("-----", end_line + len(_PEM_END))
        position = len(text) if close < 0 else close + 5
        blocks.append(_PemBlock(begin.start(), position, "PRIVATE KEY" in begin.group(), close >= 0))
    return blocks


def _entropy(token: str) -> float:
    """Shannon entropy of the characters of ``token``, in bits per character."""
    size = len(token)
    return -sum(count / size * math.log2(count / size) for count in Counter(token).values())
