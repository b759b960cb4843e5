"""Streamlit glue: cached resources, session-state keys, widgets. Only this package imports streamlit."""
