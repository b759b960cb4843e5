"""The quartile test's selections: four disjoint, equal-sized blocks of the FRS ranking, in FRS order."""

import numpy as np
import pandas as pd
import pytest

from igds.workflow.stages import quartile_block


@pytest.mark.parametrize("n", [160, 163, 8])
def test_quartile_blocks_are_disjoint_equal_and_ordered(n):
    rng = np.random.default_rng(n)
    frs = rng.gamma(1.0, size=n)
    ranked = pd.DataFrame({"example_id": [f"e{i}" for i in range(n)], "score": frs}).sort_values(
        "score", ascending=False, kind="stable").reset_index(drop=True)
    blocks = [quartile_block(ranked, q) for q in (1, 2, 3, 4)]
    sizes = {len(b) for b in blocks}
    assert sizes == {n // 4}  # equal amounts of data; the remainder (n % 4 at the tail) is in none
    ids = [set(b.example_id) for b in blocks]
    assert all(not (ids[i] & ids[j]) for i in range(4) for j in range(i + 1, 4))
    # every example of a higher block scores at least as much as every example of a lower one
    for hi, lo in zip(blocks, blocks[1:], strict=False):
        assert hi.score.min() >= lo.score.max()
    assert list(blocks[0]["rank"]) == list(range(1, n // 4 + 1))
    with pytest.raises(ValueError, match="quartile"):
        quartile_block(ranked, 5)
