"""Feature checks: the token-injection test and cross-seed SAE stability (issue 16): ``feature_checks``."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa

CHECK_COLUMNS = ["feature", "token_detector", "injection_rate", "seed_match", "seed_stable"]


class CheckQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""

    def add_feature_checks(self, sae_key: str, check_name: str, rows: pd.DataFrame) -> int:
        """Store (replace) one check's results for an SAE: ``rows`` has feature, value, flagged, detail (dict)."""
        table = pa.table({
            "sae_key": pa.array([sae_key] * len(rows), pa.string()),
            "feature": pa.array(rows.feature.astype(int), pa.int32()),
            "check_name": pa.array([check_name] * len(rows), pa.string()),
            "value": pa.array(rows.value.astype(float), pa.float64()),
            "flagged": pa.array(rows.flagged.astype(bool), pa.bool_()),
            "detail": pa.array([json.dumps(d, sort_keys=True) for d in rows.detail], pa.string()),
        })
        with self.transaction() as con:
            con.register("new_checks", table)
            con.execute("DELETE FROM feature_checks WHERE sae_key = ? AND check_name = ? AND feature IN "
                        "(SELECT feature FROM new_checks)", [sae_key, check_name])
            con.execute("INSERT INTO feature_checks (sae_key, feature, check_name, value, flagged, detail) "
                        "SELECT * FROM new_checks")
            con.unregister("new_checks")
        return len(rows)

    def feature_checks(self, sae_key: str | None, features=None) -> pd.DataFrame:
        """One row per checked feature of an SAE: feature, token_detector, injection_rate, seed_match, seed_stable
        (NaN / None where a check has not run). Empty when nothing was checked."""
        df = self.query_df("SELECT feature, check_name, value, flagged FROM feature_checks WHERE sae_key = ?",
                           [sae_key])
        if df.empty:
            return pd.DataFrame(columns=CHECK_COLUMNS)
        wide = df.pivot_table(index="feature", columns="check_name", values=["value", "flagged"], aggfunc="first")
        out = pd.DataFrame({"feature": wide.index.astype(int)})
        for check, value_col, flag_col, invert in (("token_injection", "injection_rate", "token_detector", False),
                                                   ("seed_match", "seed_match", "seed_stable", True)):
            if ("value", check) in wide:
                out[value_col] = wide[("value", check)].to_numpy(dtype=float)
                flags = wide[("flagged", check)]
                out[flag_col] = [None if pd.isna(f) else (not bool(f) if invert else bool(f)) for f in flags]
            else:
                out[value_col] = float("nan")
                out[flag_col] = None
        out = out[CHECK_COLUMNS]
        if features is not None:
            out = out[out.feature.isin([int(f) for f in features])]
        return out.reset_index(drop=True)
