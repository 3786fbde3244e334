"""Runs after the other test directories (alphabetical order: api, background, ..., security): every
log our services wrote during this pytest session must be free of tokens. The EHR access tokens
handed to rls-cds as fhirAuthorization are the FHIR test server's static tokens; JWTs are recognised
by shape (whoever minted them)."""

from __future__ import annotations

import re

JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def test_no_token_in_any_service_log_of_this_session(tmp_path_factory, fhir_server, secure):
    base = tmp_path_factory.getbasetemp()
    logs = [p for p in base.rglob("*.log") if "sekmet" not in p.name and p.is_file()]
    ours = [p for p in logs if p.name == "rls-cds.log"]
    assert ours, "no rls-cds service log found in this session"
    for path in logs:
        text = path.read_text(errors="replace")
        assert not JWT_SHAPE.search(text), f"a JWT in {path}"
        for token in fhir_server.tokens:
            assert token not in text, f"a FHIR access token in {path}"
