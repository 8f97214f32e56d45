"""The probe: ranged-GET structure parse, poster frame with PyAV, figures on the job; the rule
pattern of template.yaml against a real S3 Object Created event sample (events/)."""

from __future__ import annotations

import io
import json
import random
from fractions import Fraction
from typing import Any

import av
import boto3
import pytest
from PIL import Image

from local import template as cfn
from local.outbox import rule_pattern
from local.simulator import SAMPLE_MP4
from tests.conftest import invoke, load_event
from videogen import context as videogen_context
from videogen.models import Job, StoredVideo
from videogen.operations.jobs import get_job
from videogen.probe import ProbeError, RangeReader, parse_moov, poster_jpeg, probe_object, read_moov
from videogen.repository import JobRepository
from videogen.settings import get_settings

SAMPLE_EVENT = "probe-object-created"


def _store(bucket: str, key: str, data: bytes) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data)


def _job(repo: JobRepository, job_id: str | None = None, **fields: Any) -> Job:
    values: dict[str, Any] = {"route": "official", "model": "sora-2", "prompt": "a test card", "seconds": 4, "size": "1280x720"}
    values.update(fields)
    job = Job.new(**values)
    if job_id:
        job.id = job_id
    return repo.create(job)


def moov_at_end_video(frames: int = 60, size: tuple[int, int] = (320, 240)) -> bytes:
    """A noisy MPEG-4 video (a few hundred KB) with its ``moov`` after the media data."""
    rng = random.Random(7)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=15)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 15)
        for _ in range(frames):
            frame = av.VideoFrame(size[0], size[1], "rgb24")
            frame.planes[0].update(rng.randbytes(frame.planes[0].buffer_size))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def test_the_probe_figures_match_the_sample_video(aws: None) -> None:
    settings = get_settings()
    repo = JobRepository(settings.jobs_table)
    job = _job(repo, seconds=4, size=None, orientation="landscape")
    key = f"videos/{job.id}.mp4"
    _store(settings.video_bucket, key, SAMPLE_MP4.read_bytes())

    result = probe_object(settings, repo, settings.video_bucket, key)

    # local/assets/README.md: 3 s, 320x180, H.264
    assert result is not None
    probe = result.probe
    assert (probe.duration_seconds, probe.width, probe.height, probe.codec) == (3.0, 320, 180, "avc1")
    # 4 s ordered, 3 s delivered: more than 0.5 s apart
    assert probe.warnings == ["duration 3 s differs from the 4 s ordered"]
    assert probe.poster_key == f"posters/{job.id}.jpg"
    poster = boto3.client("s3").get_object(Bucket=settings.video_bucket, Key=probe.poster_key)
    assert poster["ContentType"] == "image/jpeg"
    assert Image.open(io.BytesIO(poster["Body"].read())).size == (320, 180)


def test_the_structure_is_read_with_a_few_ranged_gets_even_when_moov_is_at_the_end(aws: None) -> None:
    settings = get_settings()
    data = moov_at_end_video()
    assert data.find(b"moov") > data.find(b"mdat") > 0  # the layout under test
    _store(settings.video_bucket, "videos/big.mp4", data)

    reader = RangeReader(settings.video_bucket, "videos/big.mp4")
    info = parse_moov(read_moov(reader, settings.probe_max_moov_bytes))

    assert (info.duration_seconds, info.width, info.height, info.codec) == (4.0, 320, 240, "mp4v")
    assert reader.requests <= 5  # ftyp, (free), mdat headers, then moov
    assert reader.bytes_read < len(data) // 20
    # The poster needs the first frame only, not the whole object
    jpeg = poster_jpeg(reader)
    assert Image.open(io.BytesIO(jpeg)).size == (320, 240)
    assert reader.bytes_read < len(data) // 2, (reader.bytes_read, len(data))


def test_a_size_mismatch_and_a_non_mp4_are_warnings_not_errors(aws: None) -> None:
    settings = get_settings()
    repo = JobRepository(settings.jobs_table)
    job = _job(repo, seconds=3, size="1280x720")
    _store(settings.video_bucket, f"videos/{job.id}.mp4", SAMPLE_MP4.read_bytes())
    result = probe_object(settings, repo, settings.video_bucket, f"videos/{job.id}.mp4")
    assert result is not None and result.probe.warnings == ["size 320x180 differs from the 1280x720 ordered"]

    other = _job(repo)
    _store(settings.video_bucket, f"videos/{other.id}.mp4", b"<html>not a video</html>" * 10)
    result = probe_object(settings, repo, settings.video_bucket, f"videos/{other.id}.mp4")
    assert result is not None and result.probe.warnings[0].startswith("not probed:")
    assert probe_object(settings, repo, settings.video_bucket, "videos/not-a-job.mp4") is None


def test_the_probe_handler_on_the_sample_event_records_figures_the_job_json_shows(aws: None) -> None:
    # Given the sample event's bucket and key holding the sample video of a succeeded job
    event = load_event(SAMPLE_EVENT)
    bucket, key = event["detail"]["bucket"]["name"], event["detail"]["object"]["key"]
    boto3.client("s3").create_bucket(Bucket=bucket)
    _store(bucket, key, SAMPLE_MP4.read_bytes())
    settings = get_settings()
    repo = JobRepository(settings.jobs_table)
    job_id = key.removeprefix("videos/").removesuffix(".mp4")
    _job(repo, job_id, seconds=3, size=None, orientation="landscape")
    repo.start(job_id, "video_1")
    repo.succeed(job_id, StoredVideo(bucket=bucket, key=key, bytes=SAMPLE_MP4.stat().st_size))

    # When the probe function gets the event
    answer = invoke("probe", event)

    # Then the job JSON shows the figures and a presigned poster URL
    assert answer["job_id"] == job_id and answer["ranged_gets"] >= 2
    view = get_job(videogen_context.get_context(), job_id, owner="anonymous")["video"]
    assert (view["duration_seconds"], view["width"], view["height"], view["codec"], view["warnings"]) == (
        3.0,
        320,
        180,
        "avc1",
        [],
    )
    assert view["poster_url"].startswith("https://") and f"posters/{job_id}.jpg" in view["poster_url"]


def _pattern(bucket: str) -> dict[str, Any]:
    names = cfn.Names(refs={"VideoBucket": bucket}, attributes={})
    return rule_pattern("ProbeFunction", names)


def test_the_rule_pattern_matches_the_sample_object_created_event_on_eventbridge(aws: None) -> None:
    # Given the template's rule (bucket resolved) on moto's default bus, with an SQS target
    event = load_event(SAMPLE_EVENT)
    bucket = event["detail"]["bucket"]["name"]
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="probe-target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events")
    events.put_rule(Name="videos-stored", EventPattern=json.dumps(_pattern(bucket)))
    events.put_targets(Rule="videos-stored", Targets=[{"Id": "probe", "Arn": arn}])

    def put(sample: dict[str, Any]) -> None:
        entry = {
            "Source": sample["source"],
            "DetailType": sample["detail-type"],
            "Detail": json.dumps(sample["detail"]),
            "Resources": sample["resources"],
        }
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0

    # When the sample and three near misses are put on the bus
    put(event)
    poster = json.loads(json.dumps(event))
    poster["detail"]["object"]["key"] = "posters/0f8e2a4c6b1d4e3f9a7b5c3d1e2f4a6b.jpg"
    put(poster)
    elsewhere = json.loads(json.dumps(event))
    elsewhere["detail"]["bucket"]["name"] = "someone-elses-bucket"
    put(elsewhere)
    deleted = json.loads(json.dumps(event))
    deleted["detail-type"] = "Object Deleted"
    put(deleted)

    # Then only the sample reached the target
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["detail"]["object"]["key"] for m in got] == [event["detail"]["object"]["key"]]


@pytest.mark.parametrize("key", ["videos/a.mp4", "videos/sub/b.mp4"])
def test_the_rule_pattern_takes_every_key_under_videos(key: str) -> None:
    from moto.events.models import EventPattern

    event = load_event(SAMPLE_EVENT)
    event["detail"]["object"]["key"] = key
    assert EventPattern.load(json.dumps(_pattern(event["detail"]["bucket"]["name"]))).matches_event(event)


def test_hostile_structures_are_warnings_and_cost_a_bounded_number_of_gets(aws: None) -> None:
    settings = get_settings()
    # Thousands of tiny top-level boxes: the walk stops after a fixed number of headers
    _store(settings.video_bucket, "videos/boxes.mp4", b"\x00\x00\x00\x08free" * 5000)
    reader = RangeReader(settings.video_bucket, "videos/boxes.mp4")
    with pytest.raises(ProbeError, match="no moov"):
        read_moov(reader, settings.probe_max_moov_bytes)
    assert reader.requests <= 64
    # A moov whose boxes lie about their sizes, and one cut short
    with pytest.raises(ProbeError):
        parse_moov(b"\x00\x00\x00\x10mvhd\x00\x00")
    with pytest.raises(ProbeError):
        parse_moov(b"\x00\x00\x00\x0cmvhd\x01\x00\x00\x00")
