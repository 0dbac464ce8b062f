"""`report`: raw pyperf files in, REPORT.md + plots + summary.json out. Standard library only at import."""
