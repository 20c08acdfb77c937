"""Enrichment and routing: what deskbridge learns about a message before the desk sees it
(language, country, time zone, VIP, tags) and the account's rules that turn it into desk
fields (tags, priority, group, custom fields). Pure; the worker wires it in."""
