"""Quality reports: per-category counts, score histograms, agreement with reviewed labels and
sample overlays of a dataset or run, as a self-contained HTML page and a Prefect artifact."""
