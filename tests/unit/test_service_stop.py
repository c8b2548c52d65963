"""Stopping the service: a step that hangs or fails is logged, and the others still run."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gatepass.service import _bounded


async def test_a_hung_step_is_cut_off_and_logged(caplog: pytest.LogCaptureFixture):
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with caplog.at_level(logging.ERROR, logger="gatepass.service"):
        await _bounded("database", hangs(), 0.05)
    assert cancelled.is_set()
    assert "stop: database did not finish within 0.05s" in caplog.text


async def test_a_failing_step_is_logged_and_stopping_goes_on(caplog: pytest.LogCaptureFixture):
    async def fails() -> None:
        raise OSError("connection reset")

    with caplog.at_level(logging.ERROR, logger="gatepass.service"):
        await _bounded("telegram", fails(), 1)
        await _bounded("nothing to stop", None, 1)
    assert "stop: telegram failed" in caplog.text and "connection reset" in caplog.text
