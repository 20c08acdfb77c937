"""The only code that combines store, channels and desks: ingest, filing a message in the
desk, sending a reply, applying statuses, privacy and enrichment orchestration."""
