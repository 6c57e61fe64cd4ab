"""The long forms of tests/reliability: skipped unless ``CALLVAULT_SOAK=1`` (see docs/reliability.md).

    CALLVAULT_SOAK=1 CALLVAULT_SOAK_TRIALS=300 .venv/bin/pytest tests/soak -s [--db=postgres]
"""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("CALLVAULT_SOAK") == "1" else ["test_*.py"]
