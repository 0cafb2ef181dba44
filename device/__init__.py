"""Everything that runs outside model building, split by where it runs.

`device.station` runs on the inspection station (cameras, inference loop, outbox, MQTT link, API
services, OPC UA, rollout and escalation clients); `device.plant` runs on a plant server (verifier,
release publisher, file server). What both sides share sits at this level: the config file's schema
(`config`), how every MQTT connection is made (`mqtt_client`), what a process runs on (`environment`),
and the wire contracts they speak to each other (`device.wire`). Neither side imports the other.
"""
