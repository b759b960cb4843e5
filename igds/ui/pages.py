"""Page files, titles and stable URL paths (deep links) of the dashboard."""

PAGES = [
    # (file, title, url_path, icon)
    ("pages/1_overview.py", "Overview", "overview", ":material/dashboard:"),
]
