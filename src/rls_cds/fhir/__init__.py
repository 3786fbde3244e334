"""FHIR access: REST client with paging and deadlines, SMART Backend Services, Bulk Data."""
