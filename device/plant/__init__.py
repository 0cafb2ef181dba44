"""Plant-side services: they run on a plant server, never on the inspection station.

`verifier` answers the stations' escalated frames with an accurate model (`edgeinspect verify`);
`release_publisher` builds, signs and publishes model releases and promotes them across the fleet
(`edgeinspect release publish`); `file_server` serves the release files to the stations
(`edgeinspect release serve`). The wire contracts they share with the stations are in `device.wire`;
nothing here imports `device.station`.
"""
