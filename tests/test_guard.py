"""Guard: the key is released only once held (a pending request is never cancelled)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from bridge.guard import Guard

pytestmark = pytest.mark.asyncio


async def test_release_before_the_grant_is_refused() -> None:
    """Releasing a key not yet granted raises, naming the fix, instead of losing the request."""
    guard = Guard(cast(Any, None), lambda: None)
    with pytest.raises(RuntimeError, match="wait for it before releasing it"):
        await guard.release()
    assert not guard.requested and not guard.held
