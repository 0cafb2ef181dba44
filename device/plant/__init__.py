"""Plant-side services: they run on a plant server, never on the inspection station.

`verifier` answers the stations' escalated frames with an accurate model (`edgeinspect verify`);
`release_publisher` builds, signs and publishes model releases and promotes them across the fleet
(`edgeinspect release publish`); `file_server` serves the release files to the stations
(`edgeinspect release serve`). The wire contracts they share with the stations live beside the station
side: `device.escalation.protocol`, `device.rollout.manifest`, `device.rollout.wire`.
"""
