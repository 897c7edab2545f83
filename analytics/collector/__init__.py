"""The collector: what runs in the web process on the events' hot path, in front of Django.

``endpoints`` (the four routes), ``http`` (responses and bodies), ``address`` (the client's
address), ``admission`` (salts, sites, origins, quota, rate limits with ``ratelimit``),
``keys`` (API keys), ``ids`` (client ids), ``enrich``, ``sitecache``, ``publish`` (the group
commit to the broker), ``snippet``, and ``app`` (routes and each process's background work).
"""
