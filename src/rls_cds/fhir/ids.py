"""The FHIR R4 id datatype: what a patient id must look like before it reaches a query, a key or a log."""

from __future__ import annotations

import re

# FHIR R4 `id`: [A-Za-z0-9\-\.]{1,64}. Anything else could not be a resource id on any server.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}\Z")  # \Z, not $, which also matches before a final newline
