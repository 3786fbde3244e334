"""EHR authentication (JWT), trusted issuers, outbound allowlists, request limits."""
