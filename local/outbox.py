"""Event sources the local stack runs like Lambda's event source mappings do.

* :class:`StreamPump`: a DynamoDB stream (moto serves DynamoDB Streams) into a function, with
  the mapping's filter criteria, batch size, partial batch failures (the checkpoint moves to
  the first failed record, which is retried with everything after it), retries and an
  on-failure destination (an SQS queue);
* :class:`QueuePump`: an SQS queue into a function: long-poll, invoke with the SQS event
  shape (``ApproximateReceiveCount`` included), delete what succeeded, leave batch item
  failures (and everything of a failed invocation) for the queue to bring back;
* :func:`mapping_of` / :func:`rule_pattern`: the template's ``DynamoDB`` / ``SQS`` /
  ``EventBridgeRule`` events, so the local wiring is read from template.yaml.

Lambda's filter patterns are EventBridge patterns; moto's ``EventPattern`` matches them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.events.models import EventPattern

from local import template as cfn

Invoke = Callable[[dict[str, Any]], Any]


class InvocationFailed(Exception):
    """The function raised (the whole batch failed)."""


@dataclass
class Mapping:
    """One event source mapping of a function, from the template."""

    function: str
    kind: str  # "DynamoDB" | "SQS"
    source: Any  # unresolved Stream / Queue value
    batch_size: int
    filters: list[dict[str, Any]] = field(default_factory=list)
    max_retries: int = 3
    on_failure: Any = None  # unresolved destination ARN


def mapping_of(function: str, kind: str) -> Mapping:
    """The function's (single) event of type ``kind`` in template.yaml."""
    events = cfn.resource(function)["Properties"].get("Events", {})
    for event in events.values():
        if event.get("Type") != kind:
            continue
        props = event.get("Properties", {})
        filters = [json.loads(f["Pattern"]) for f in props.get("FilterCriteria", {}).get("Filters", [])]
        return Mapping(
            function=function,
            kind=kind,
            source=props.get("Stream") if kind == "DynamoDB" else props.get("Queue"),
            batch_size=int(props.get("BatchSize", 100 if kind == "DynamoDB" else 10)),
            filters=filters,
            max_retries=int(props.get("MaximumRetryAttempts", 3)),
            on_failure=props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"),
        )
    raise KeyError(f"{function} has no {kind} event in template.yaml")


def rule_pattern(function: str, names: cfn.Names) -> dict[str, Any]:
    """The resolved pattern of the function's ``EventBridgeRule`` event."""
    for event in cfn.resource(function)["Properties"].get("Events", {}).values():
        if event.get("Type") == "EventBridgeRule":
            return dict(cfn.resolve(event["Properties"]["Pattern"], names))
    raise KeyError(f"{function} has no EventBridgeRule event in template.yaml")


def matches(patterns: list[dict[str, Any]], record: dict[str, Any]) -> bool:
    """Lambda's filter criteria: no filters pass everything, else any one pattern must match."""
    if not patterns:
        return True
    return any(EventPattern.load(json.dumps(p)).matches_event(record) for p in patterns)


def _lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A DynamoDB Streams API record in the shape Lambda passes to a function."""
    stream = dict(record["dynamodb"])
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        stream["ApproximateCreationDateTime"] = created.timestamp()
    return {**{k: v for k, v in record.items() if k != "dynamodb"}, "dynamodb": stream, "eventSourceARN": stream_arn}


class _Pump:
    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                if not self.step():
                    self.stopping.wait(0.2)
            except Exception as exc:  # noqa: BLE001 - a pump keeps running, like the service would
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self.stopping.wait(0.5)

    def step(self) -> bool:
        raise NotImplementedError


class StreamPump(_Pump):
    """A DynamoDB stream into a function, as Lambda's stream event source mapping runs it."""

    def __init__(
        self,
        streams: Any,
        sqs: Any,
        stream_arn: str,
        mapping: Mapping,
        invoke: Invoke,
        *,
        on_failure_queue_url: str | None = None,
    ) -> None:
        super().__init__(f"stream-pump-{mapping.function}")
        self.streams, self.sqs = streams, sqs
        self.stream_arn = stream_arn
        self.mapping = mapping
        self.invoke = invoke
        self.on_failure_queue_url = on_failure_queue_url
        self.iterators: dict[str, str] = {}
        self.shards: list[dict[str, Any]] = []
        self.shards_checked = -math.inf
        self.pending: list[dict[str, Any]] = []
        self.attempts = 0
        self.invocations = 0

    def _fetch(self) -> list[dict[str, Any]]:
        if time.monotonic() >= self.shards_checked + 10:
            self.shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"].get("Shards", [])
            self.shards_checked = time.monotonic()
        for shard in self.shards:
            if shard["ShardId"] not in self.iterators:
                self.iterators[shard["ShardId"]] = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self.iterators.items()):
            answer = self.streams.get_records(ShardIterator=iterator, Limit=self.mapping.batch_size)
            if answer.get("NextShardIterator"):
                self.iterators[shard_id] = answer["NextShardIterator"]
            records.extend(_lambda_record(r, self.stream_arn) for r in answer.get("Records", []))
        return [r for r in records if matches(self.mapping.filters, r)]

    def step(self) -> bool:
        """Invoke once (a new batch, or the retry of the pending one). False when idle."""
        if not self.pending:
            self.pending = self._fetch()
            self.attempts = 0
            if not self.pending:
                return False
        batch = self.pending[: self.mapping.batch_size]
        self.invocations += 1
        try:
            answer = self.invoke({"Records": batch})
        except InvocationFailed:
            failed_from = 0
        else:
            failures = {f.get("itemIdentifier") for f in (answer or {}).get("batchItemFailures", [])}
            sequence = [r["dynamodb"]["SequenceNumber"] for r in batch]
            failed_from = min((sequence.index(s) for s in failures if s in sequence), default=len(batch))
        if failed_from >= len(batch):
            self.pending = self.pending[len(batch) :]
            self.attempts = 0
            return True
        # The checkpoint stays before the first failed record: it is retried with all after it.
        self.pending = self.pending[failed_from:]
        self.attempts += 1
        if self.attempts > self.mapping.max_retries:
            self._dead_letter(self.pending[: self.mapping.batch_size])
            self.pending = self.pending[self.mapping.batch_size :]
            self.attempts = 0
        else:
            self.stopping.wait(min(2.0, 0.1 * 2**self.attempts))
        return True

    def _dead_letter(self, batch: list[dict[str, Any]]) -> None:
        if not self.on_failure_queue_url:
            return
        first, last = batch[0]["dynamodb"]["SequenceNumber"], batch[-1]["dynamodb"]["SequenceNumber"]
        body = {
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": self.mapping.function},
            "DDBStreamBatchInfo": {"streamArn": self.stream_arn, "startSequenceNumber": first, "endSequenceNumber": last},
        }
        self.sqs.send_message(QueueUrl=self.on_failure_queue_url, MessageBody=json.dumps(body))


class QueuePump(_Pump):
    """An SQS queue into a function, as Lambda's SQS event source mapping runs it."""

    def __init__(self, sqs: Any, queue_url: str, queue_arn: str, batch_size: int, invoke: Invoke, *, name: str) -> None:
        super().__init__(f"queue-pump-{name}")
        self.sqs = sqs
        self.queue_url, self.queue_arn = queue_url, queue_arn
        self.batch_size = batch_size
        self.invoke = invoke
        self.invocations = 0

    def step(self) -> bool:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(10, self.batch_size),
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = answer.get("Messages", [])
        if not messages:
            return False
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": self.queue_arn,
                "awsRegion": self.queue_arn.split(":")[3] if self.queue_arn.count(":") >= 3 else "us-east-1",
            }
            for m in messages
        ]
        self.invocations += 1
        try:
            result = self.invoke({"Records": records})
        except InvocationFailed:
            return True  # nothing is deleted: every message comes back after its visibility timeout
        failed = {f.get("itemIdentifier") for f in (result or {}).get("batchItemFailures", [])}
        done = [
            {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(records) if r["messageId"] not in failed
        ]
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=done)
        return True


def drain(pump: _Pump, *, until: Callable[[], bool] | None = None, timeout: float = 30.0) -> None:
    """Run a pump in this thread (tests): until idle, or until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = pump.step()
        if until is not None:
            if until():
                return
            if not busy:
                time.sleep(0.05)
        elif not busy:
            return
    raise TimeoutError(f"{pump.name} did not finish within {timeout:.0f} s")


# -- the local stack's wiring (template.yaml's queues, stream, rules and mappings) ----------


def create_queues(aws: Any, stack: str, refs: dict[str, Any], attributes: dict[tuple[str, str], Any]) -> dict[str, str]:
    """Each ``AWS::SQS::Queue`` with its template attributes; fills ``Ref`` (URL) and ``Arn``/``QueueName``.

    Queues without a redrive policy come first: the others name them.
    """
    sqs = aws.client("sqs")
    queues = cfn.resources_of_type("AWS::SQS::Queue")
    urls: dict[str, str] = {}
    for logical_id, res in sorted(queues.items(), key=lambda item: "RedrivePolicy" in item[1].get("Properties", {})):
        props = res.get("Properties", {})
        names = cfn.Names(refs=refs, attributes=attributes, stack=stack)
        queue_attributes = {
            key: str(props[key]) for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds") if key in props
        }
        if "RedrivePolicy" in props:
            queue_attributes["RedrivePolicy"] = json.dumps(cfn.resolve(props["RedrivePolicy"], names))
        name = f"{stack}-{logical_id}"
        url = sqs.create_queue(QueueName=name, Attributes=queue_attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        refs[logical_id] = url
        attributes[(logical_id, "Arn")] = arn
        attributes[(logical_id, "QueueName")] = name
        urls[logical_id] = url
    return urls


class EventSources:
    """The template's DynamoDB-stream, SQS and EventBridge-rule events, run against moto."""

    def __init__(self) -> None:
        self.pumps: list[_Pump] = []

    def start(self, aws: Any, runtime: Any, names: cfn.Names, tables: dict[str, str]) -> EventSources:
        for logical_id, res in cfn.resources_of_type("AWS::Serverless::Function").items():
            for event_name, event in (res.get("Properties", {}).get("Events") or {}).items():
                kind = event.get("Type")
                if kind == "DynamoDB":
                    self.pumps.append(self._stream(aws, runtime, names, tables, logical_id))
                elif kind == "SQS":
                    self.pumps.append(self._queue(aws, runtime, names, logical_id))
                elif kind == "EventBridgeRule":
                    self.pumps.append(self._rule(aws, runtime, names, logical_id, event_name))
        for pump in self.pumps:
            pump.start()
        return self

    def stop(self) -> None:
        for pump in self.pumps:
            pump.stopping.set()
        for pump in self.pumps:
            pump.thread.join(timeout=5)

    @staticmethod
    def _invoker(runtime: Any, logical_id: str) -> Invoke:
        from local.lambdas import InvocationError

        pool = runtime.find(logical_id)

        def invoke(event: dict[str, Any]) -> Any:
            try:
                return pool.invoke(event)
            except InvocationError as exc:
                raise InvocationFailed(str(exc.payload.get("errorMessage"))) from exc

        return invoke

    def _stream(self, aws: Any, runtime: Any, names: cfn.Names, tables: dict[str, str], logical_id: str) -> StreamPump:
        mapping = mapping_of(logical_id, "DynamoDB")
        table_logical = mapping.source["Fn::GetAtt"][0]
        stream_arn = aws.client("dynamodb").describe_table(TableName=tables[table_logical])["Table"]["LatestStreamArn"]
        on_failure = None
        if mapping.on_failure is not None:
            # The destination is a queue ARN; its pump-side handle is the queue's URL (its Ref).
            arn = cfn.resolve(mapping.on_failure, names)
            by_arn = {value: names.refs[lid] for (lid, attr), value in names.attributes.items() if attr == "Arn"}
            on_failure = by_arn.get(arn)
        return StreamPump(
            aws.client("dynamodbstreams"),
            aws.client("sqs"),
            stream_arn,
            mapping,
            self._invoker(runtime, logical_id),
            on_failure_queue_url=on_failure,
        )

    def _queue(self, aws: Any, runtime: Any, names: cfn.Names, logical_id: str) -> QueuePump:
        mapping = mapping_of(logical_id, "SQS")
        queue_logical = mapping.source["Fn::GetAtt"][0]
        return QueuePump(
            aws.client("sqs"),
            names.refs[queue_logical],
            names.attributes[(queue_logical, "Arn")],
            mapping.batch_size,
            self._invoker(runtime, logical_id),
            name=logical_id,
        )

    def _rule(self, aws: Any, runtime: Any, names: cfn.Names, logical_id: str, event_name: str) -> QueuePump:
        """The rule on moto's default bus, targeting a local queue the pump hands to the function
        one event at a time (EventBridge invokes a Lambda target once per event)."""
        sqs, events = aws.client("sqs"), aws.client("events")
        rule = f"{names.stack}-{logical_id}{event_name}"
        url = sqs.create_queue(QueueName=f"{rule}-target", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=rule, EventPattern=json.dumps(rule_pattern(logical_id, names)))
        events.put_targets(Rule=rule, Targets=[{"Id": logical_id, "Arn": arn}])
        invoke = self._invoker(runtime, logical_id)

        def each_event(batch: dict[str, Any]) -> dict[str, Any]:
            failures = []
            for record in batch["Records"]:
                try:
                    invoke(json.loads(record["body"]))
                except InvocationFailed:
                    failures.append({"itemIdentifier": record["messageId"]})
            return {"batchItemFailures": failures}

        return QueuePump(sqs, url, arn, 1, each_event, name=f"{logical_id}-rule")
