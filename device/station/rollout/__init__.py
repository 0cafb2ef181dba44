"""Fleet model rollout: signed release manifests from the plant, verified and applied by each station.

`device.wire.release` (the signed documents and keys), `device.plant.release_publisher` (plant side:
sign, publish, promote), `station` (station side: verify, download, stage, activate, health-check,
report, roll back), `download` (bounded HTTP(S) fetch), `health` (does the new model judge frames sanely).
"""
