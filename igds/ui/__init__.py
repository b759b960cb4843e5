"""Streamlit glue: cached resources, session-state keys, widgets. Only this package imports streamlit."""

from igds.ui.pages import leave_legacy_pages

leave_legacy_pages()  # a server's first request, when it is a deep link, runs through app.py too
