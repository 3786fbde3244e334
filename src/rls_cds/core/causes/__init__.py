"""One module per group of causes (DESIGN.md §3); ``rls_cds.core.rules`` registers them by cause id."""
