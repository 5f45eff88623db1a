"""Runs recorded by decorated calls in the tests go to a database of this test session, not ./.proctor."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_folder = tempfile.mkdtemp(prefix="proctor-tests-")
atexit.register(shutil.rmtree, _folder, ignore_errors=True)  # after the run log's own atexit flush
os.environ["PROCTOR_DB"] = os.path.join(_folder, "runs.db")
