"""The Stats API (v2 and v1), the goals API, the realtime endpoint, exports and the API schema."""
