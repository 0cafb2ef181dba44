"""Hybrid edge–plant inspection: uncertain frames are escalated to plant-side verifiers over MQTT 5.

`device.wire.escalation` is the wire contract, `band` picks the frames to escalate, `client` is the station
side (holds a
decision until the verifier answers or the deadline passes), the plant-side service
(`edgeinspect verify`) is `device.plant.verifier`. See docs/ESCALATION.md.
"""
