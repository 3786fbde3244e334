"""Nightly panel screening: Bulk export, fan-out, run state, worklists, the run web view."""
