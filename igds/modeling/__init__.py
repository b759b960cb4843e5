"""Model loading, architecture adapters and hook context managers."""
