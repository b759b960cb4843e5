"""IGDS: interpretability-guided data selection with sparse-autoencoder features.

The package root stays light: heavy libraries (torch, transformers, sae-lens, peft) are imported
only by the modules that need them, so ``import igds`` and the dashboard start fast.
"""

__version__ = "0.1.0"
