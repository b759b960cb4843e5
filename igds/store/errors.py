"""The store's error type (its own module so that the base and the migrations both raise it without a loop)."""


class StoreError(RuntimeError):
    """A store that cannot be opened or has an incompatible schema."""
