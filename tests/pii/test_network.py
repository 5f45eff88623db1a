"""IP addresses: IPv4 and IPv6, and what only looks like one."""

from __future__ import annotations

import pytest

from tests.pii.conftest import Found


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("client 203.0.113.7 connected", "203.0.113.7"),
        ("http://10.0.0.1:8080/health", "10.0.0.1"),
        ("allow 192.168.0.0/16", "192.168.0.0"),  # private ranges count
        ("from 8.8.8.8.", "8.8.8.8"),
        ("255.255.255.255", "255.255.255.255"),
        ("version 1.2.3.4 is out", "1.2.3.4"),  # a dotted quad is an address, whatever the sentence says
        ("host 2001:db8::1 is up", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334.", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ],
)
def test_ip_addresses(found: Found, text: str, address: str) -> None:
    assert found(text) == [("ip_address", address)]


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",  # loopback
        "localhost ::1",
        "0.0.0.0",  # unspecified
        "listen [::]:80",
        "256.1.1.1",
        "01.2.3.4",  # leading zero
        "1.2.3",
        "1.2.3.4.5",  # longer dotted run
        "v1.2.3.4",
        "release-1.2.3.4a",
        "std::vector<int>",
        "Bad::Cafe",  # hex letters but no digits
        "00:1a:2b:3c:4d:5e",  # MAC address
        "12:30:45",
        "a::b::c1",
    ],
)
def test_near_misses_are_not_ip_addresses(found: Found, text: str) -> None:
    assert [pair for pair in found(text) if pair[0] == "ip_address"] == []
