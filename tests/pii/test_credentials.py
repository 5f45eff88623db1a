"""Secrets: provider keys, JWTs, PEM private keys, generic random tokens, and look-alikes."""

from __future__ import annotations

import pytest

from proctor.pii import PIIDetector
from tests.pii.conftest import Found

GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
    "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1b2c3d4\nq8W9e0r1t2y3\n-----END RSA PRIVATE KEY-----"
RANDOM_TOKENS = [  # secrets.token_urlsafe and base62 draws
    "Pe9NcrGh2sS-8qaW-lYfe0px6jD9LlGU",
    "kfqRlIkz9TobT72tAeVb8mHGV8daAjCe",
    "MCaFSub1IbYjjBNXjw3nWyP8dLBTeJU1DORxIq2x",
    "2VLWbq5fMwF618GyIDWV",
    "GvVKFbZtZoT6qjsPq9jQpQV0u9MlwyNNtZqckwPNpfkcu4e9wx",
]


@pytest.mark.parametrize(
    "key",
    [
        "AKIAIOSFODNN7EXAMPLE",  # AWS access key ID
        "ASIAY34FZKBOKMUTVV7A",
        GITHUB,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN",
        "glpat-Ab3dEf6hIj9kLm2nOp5q",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",  # Stripe
        "rk_test_51H8aBcDeFgHiJkLmNoPqRs",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "sk-proj-abc123DEF456ghi789JKL012mno345",  # OpenAI
        "sk-ant-api03-AbCdEf123456GhIjKl789012MnOpQr",  # Anthropic
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",  # Slack
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",  # Google
        "hf_abcdefghijklmnopqrstuvwxyzABCDEF12",  # Hugging Face
        "npm_abcdefghijklmnopqrstuvwxyz0123456789",
        "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",  # SendGrid
        JWT,
        PEM,
        *RANDOM_TOKENS,
    ],
)
def test_secrets_are_found_whole(found: Found, key: str) -> None:
    for text in (key, f"Authorization: Bearer {key}", f'{{"api_key": "{key}"}}', f"KEY={key}\n"):
        assert found(text) == [("secret", key)], text


def test_a_key_after_a_path_separator(found: Found) -> None:
    assert found(f"path/to/{GITHUB}") == [("secret", GITHUB)]


def test_a_cut_off_private_key_is_redacted_to_the_end(found: Found) -> None:
    text = "key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
    assert found(text) == [("secret", text[5:])]


def test_two_pem_blocks(found: Found) -> None:
    assert found(f"{PEM}\n\n{PEM}") == [("secret", PEM), ("secret", PEM)]


@pytest.mark.parametrize(
    "text",
    [
        "550e8400-e29b-41d4-a716-446655440000",  # UUID
        "550E8400-E29B-41D4-A716-446655440000",
        "commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",  # git SHA
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "getUserProfileV2Handler",
        "thisIsALongCamelCaseName123",
        "MyS3BucketNameForLogs2024",
        "test_user_registration_flow_v2",
        "/usr/local/lib/python3.11/site-packages",
        "Users/JohnSmith/Downloads/IMG_20240115",
        "src/proctor/pii/detector.py",
        "https://example.com/api/v2/users/12345/orders?page=2",
        "internationalization2024",
        "AWS_SECRET_ACCESS_KEY_ID_2",
        "pk_live_4eC39HqLyjWDarjtT1zdp7dc",  # Stripe publishable keys are public
        "sk-learn-is-not-a-key-at-all",
        "desk-sk-aaaaaaaaaaaaaaaaaaaaaaaa1",  # sk- inside a word
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
        "A1b" * 30,  # low entropy
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk" * 6,  # base64 data, too long
        "The quick brown fox jumps over the lazy dog 42 times.",
    ],
)
def test_look_alikes_are_not_secrets(found: Found, text: str) -> None:
    assert [pair for pair in found(text) if pair[0] == "secret"] == []


def test_thresholds_are_configurable() -> None:
    token = "Zx9Qw2Er5Ty8Ui1Op4As"  # 20 characters
    assert PIIDetector().contains(token)
    assert not PIIDetector(min_token_length=21).contains(token)
    assert not PIIDetector(entropy_threshold=5.0).contains(token)
    assert PIIDetector(min_token_length=21).contains(
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
    )  # prefixed: no threshold


def test_only_tokens_inside_a_certificate_are_spared(found: Found) -> None:
    certificate = "-----BEGIN CERTIFICATE-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END CERTIFICATE-----"
    token = RANDOM_TOKENS[0]
    assert found(f"{token}\n{certificate}\n{token}") == [("secret", token), ("secret", token)]
