"""The web console over proctor's database: approvals, runs and policies; needs the ``web`` extra."""

from __future__ import annotations
