"""pytest fixtures for code that pays or gets paid on a local Tempo devnet.

Enable in a ``conftest.py`` with ``pytest_plugins = ["mpp_claude.testing"]``.

* ``devnet`` (session): one running anvil Tempo devnet, stopped at the end of the run
  (also on Ctrl-C; on Linux anvil also dies with the test process).
* ``funded_account`` (function): a fresh account holding 100 pathUSD on that devnet.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .devnet import Devnet


@pytest.fixture(scope="session")
def devnet() -> Iterator[Devnet]:
    net = Devnet.start()
    try:
        yield net
    finally:
        net.stop()


@pytest.fixture
def funded_account(devnet: Devnet) -> Any:
    return devnet.new_funded_account()
