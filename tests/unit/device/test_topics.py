"""The topic strings are a public contract: PLCs and SCADA subscribe to exactly these."""

from __future__ import annotations

import pytest

from device.station.topics import Topics


def test_every_topic_sits_under_prefix_line_and_station() -> None:
    topics = Topics("edgeinspect", "line1", "station7")
    assert topics.all() == {
        "alert": "edgeinspect/line1/station7/alert",
        "status": "edgeinspect/line1/station7/status",
        "result": "edgeinspect/line1/station7/result",
        "reject": "edgeinspect/line1/station7/reject",
        "line_speed": "edgeinspect/line1/station7/line_speed",
        "command": "edgeinspect/line1/station7/command",
        "command_response": "edgeinspect/line1/station7/command/response",
    }


def test_prefix_may_span_several_levels() -> None:
    assert Topics("plant7/edgeinspect", "l2", "s3").alert == "plant7/edgeinspect/l2/s3/alert"


@pytest.mark.parametrize(
    ("prefix", "line", "station", "problem"),
    [
        ("edge/+", "l1", "s1", "wildcards"),
        ("edge", "l#", "s1", "wildcards"),
        ("edge", "l1", "a/b", "single topic level"),
        ("/edge", "l1", "s1", "empty topic levels"),
        ("edge//x", "l1", "s1", "empty topic levels"),
        ("edge", "", "s1", "must not be empty"),
    ],
)
def test_topics_that_would_subscribe_or_publish_elsewhere_are_refused(
    prefix: str, line: str, station: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Topics(prefix, line, station)
