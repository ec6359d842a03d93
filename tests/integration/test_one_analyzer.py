"""One analyzer per lake: while one analysis holds the lake's slot, another skips (real Prefect server)."""

from __future__ import annotations

import pytest

from tasks.publish.analyzer import sole_analyzer

pytestmark = pytest.mark.integration


async def test_a_second_analyzer_of_the_same_lake_skips_and_another_lake_does_not(prefect_api):
    async with sole_analyzer("s3://bucket/one-analyzer-test") as first:
        async with sole_analyzer("s3://bucket/one-analyzer-test", timeout_s=1.0) as second:
            async with sole_analyzer("s3://bucket/another-lake", timeout_s=1.0) as other:
                assert (first, second, other) == (True, False, True)
    async with sole_analyzer("s3://bucket/one-analyzer-test", timeout_s=1.0) as again:
        assert again  # released when the first ended
