"""Page files, titles and stable URL paths (deep links) of the dashboard."""

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
