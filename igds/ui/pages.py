"""Page files, titles and stable URL paths (deep links) of the dashboard, and the URL keys each page reads."""

PAGES = [
    # (file, title, url_path, icon)
    ("pages/1_overview.py", "Overview", "overview", ":material/dashboard:"),
    ("pages/7_data.py", "Data", "data", ":material/database:"),
    ("pages/2_features.py", "Features", "features", ":material/neurology:"),
    ("pages/9_lens.py", "Text lens", "lens", ":material/manage_search:"),
    ("pages/3_interventions.py", "Interventions", "interventions", ":material/science:"),
    ("pages/4_selection.py", "Selection", "selection", ":material/filter_alt:"),
    ("pages/8_compare.py", "Compare", "compare", ":material/compare_arrows:"),
    ("pages/5_finetune.py", "Export & fine-tune", "finetune", ":material/model_training:"),
    ("pages/6_results.py", "Results", "results", ":material/monitoring:"),
]

# Streamlit serves the default page at "/" only (its own path answers "Page not found"), so the default is a hidden
# page at this path that opens the first page at its own path: every listed page has one working deep link
HOME = "home"

# the URL keys a page reads besides ?task= (every page takes it); a link's other keys are named as unused there
PAGE_LINK_KEYS = {
    "features": ("feature", "example"),
    "lens": ("text", "example"),
    "compare": ("selection", "compare"),
    "results": ("run",),
}


def leave_legacy_pages() -> None:
    """Route every script run through app.py's ``st.navigation``, the first one after a server start included.

    Until a script run has called ``st.navigation``, Streamlit treats the ``pages/`` folder as a legacy multipage app
    (a process-wide flag) and runs a deep link's page file on its own: ``/features`` as the first request would get
    no task picker, no link checks and file names in the sidebar. Called on the first import of :mod:`igds.ui` in a
    script run, this turns that mode off and reruns: app.py then runs and opens the same page, since each
    ``url_path`` equals the legacy name of its file (``pages/2_features.py`` → ``features``)."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if PagesManager.uses_pages_directory and get_script_run_ctx(suppress_warning=True) is not None:
        import streamlit as st

        PagesManager.uses_pages_directory = False
        st.rerun()
