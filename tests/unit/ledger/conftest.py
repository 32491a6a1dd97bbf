from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tensorgate.ledger.base import Ledger
from tensorgate.ledger.fake import FakeLedger
from tensorgate.ledger.sql import open_ledger


@pytest.fixture
def sqlite_dsn(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger' / 'ledger.db'}"


@pytest.fixture(params=["fake", "sqlite"])
async def ledger(request: pytest.FixtureRequest, sqlite_dsn: str) -> AsyncIterator[Ledger]:
    """Both the fake and the SQLite ledger: the fake must behave like the real thing."""
    if request.param == "fake":
        fake = FakeLedger()
        yield fake
        await fake.close()
        return
    real = await open_ledger(sqlite_dsn)
    yield real
    await real.close()
