"""The contracts a station and the plant speak over MQTT, shared by both sides and owned by neither.

`escalation` (verify requests and answers), `release` (signed release manifests and their keys),
`fleet` (the rollout's topics and the stations' reports).
"""
