"""Load (issue 10, part 5, small version; ``bench/reliability.py`` has the big one).

Five WebSocket clients (one of them stops reading for a while) submit 3,000
``demo::echo`` tasks in total and subscribe to every event. Each client must
account for every completed task (a ``completed`` event, or the ``missed``
count of a ``lagged`` notice), see nothing twice and see ``seq`` increase;
the sidecar's peak RSS, sampled every 100 ms, stays bounded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.common import MIB, write_artifact
from tests.reliability.loadgen import run_load

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_concurrent_clients_lose_no_event_without_a_lagged_notice(tmp_path: Path) -> None:
    res = await run_load(tmp_path, clients=5, tasks=3000, slow_clients=1, slow_for=3.0, pad=3000)
    assert res.lagged_notices > 0, f"the slow client never lagged: {res.line()}"
    line = res.line()
    print(line)
    write_artifact("load.txt", line + "\n")
    assert not res.problems, "\n".join(res.problems)
    assert res.peak_rss - res.base_rss < 200 * MIB, line
