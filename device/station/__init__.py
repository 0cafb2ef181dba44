"""The inspection station's runtime: it runs on the edge box beside the camera.

Frames come from `camera` through `capture` and `inspection_worker` into `runtime` (the `RuntimePort`
the API and the command table drive); alerts leave through `outbox` and `mqtt_link`; `sparkplug`, `opcua`,
`escalation` (client side) and `rollout` (station side) are the optional doors to the plant.
"""
