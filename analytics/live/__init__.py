"""What runs behind the live dashboard: the delta contract and its push from the worker
(``push``), and the WebSocket consumers with their per-site hub and the live feed
(``consumers``)."""
