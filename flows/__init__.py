"""Prefect flows, settings and the `autolabel` command line."""
