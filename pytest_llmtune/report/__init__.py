"""The reporting layer, pure text from plain records: the terminal's lines (summaries, leaderboard, progress, the
`--co` preview, instance tables), the JSON report and the HTML page with its plot. No pytest, no request, no file
written here (a ruff rule in report/ruff.toml enforces it): the session layer prints and writes what these return;
the progress display writes only to the `Screen` the session gives it (report/progress.py)."""
