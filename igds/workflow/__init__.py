"""The method on a workspace: open a model + SAE + store, run each stage with lineage, fine-tune
and evaluate a selection, and the read models the dashboard shows."""
