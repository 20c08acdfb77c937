"""The non-HTTP edges: the SMTP and SIP listeners. Sockets in, ``flows.ingest`` out;
``gateway/`` is HTTP only."""
