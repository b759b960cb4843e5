"""The sae-lens pretrained SAE registry, browsable offline: the directory ships inside the sae-lens package
(``pretrained_saes.yaml``), so listing releases needs no network; loading one does (``IGDS_OFFLINE=0``)."""

from __future__ import annotations

import pandas as pd


def pretrained_saes(model: str = "", release: str = "", limit: int | None = None) -> pd.DataFrame:
    """SAEs of the sae-lens registry, one row per SAE: release, sae_id, model, hook site, the source string to
    use (``<release>::<sae_id>``) and the Neuronpedia id.

    Args:
        model: keep releases whose model name contains this (case-insensitive), e.g. ``gemma-2-2b`` or
            ``gpt2``; a hub id such as ``google/gemma-2-2b`` matches by its name after the ``/``.
        release: keep releases whose name contains this.
        limit: at most this many rows.
    """
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    want = model.split("/")[-1].lower()
    rows = []
    for name, entry in get_pretrained_saes_directory().items():
        if want and want not in str(entry.model).lower():
            continue
        if release and release.lower() not in name.lower():
            continue
        for sae_id, path in entry.saes_map.items():
            rows.append({"release": name, "sae_id": sae_id, "model": entry.model,
                         "source": f"{name}::{sae_id}", "path": path,
                         "neuronpedia_id": (entry.neuronpedia_id or {}).get(sae_id)})
            if limit is not None and len(rows) >= limit:
                return pd.DataFrame(rows)
    return pd.DataFrame(rows, columns=["release", "sae_id", "model", "source", "path", "neuronpedia_id"])
