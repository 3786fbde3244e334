"""The pure clinical core: FHIR JSON -> facts -> findings -> cards. No I/O."""
