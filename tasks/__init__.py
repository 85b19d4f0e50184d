"""Thin Prefect tasks over `autolabel.models` and `autolabel.storage`."""
