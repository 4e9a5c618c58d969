"""``lockstep serve`` that lets a companion on probation change groups (run by the tests as a subprocess,
like a compromised or careless server): its own probation check (api_groups._refuse_on_probation) is
gone, so what stops such a change is only what every member's device refuses (linking.md §4.6).

usage: python probation_lifting_server.py serve ARGS...
"""

from __future__ import annotations

import sys
from typing import Any

from lockstep.cli import main
from lockstep.server import api_groups


async def _lets_everything_through(services: Any, identity: Any) -> None:
    return None


if __name__ == "__main__":
    api_groups._refuse_on_probation = _lets_everything_through
    sys.exit(main(sys.argv[1:]))
