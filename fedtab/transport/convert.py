"""All conversion between :mod:`fedtab.transport.messages` and the generated protobuf classes.

Paired ``x_to_proto`` / ``x_from_proto`` functions; structured payloads that are streamed
(shard sets, committed steps, artifacts) are converted to and from bytes here too. Malformed
input raises :class:`~fedtab.errors.WireFormatError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from google.protobuf.message import DecodeError

from fedtab.errors import WireFormatError
from fedtab.protocol.exchange import (
    CommittedStep,
    PayloadKind,
    StepStatus,
    Tag,
    Upload,
    sha256_hex,
)
from fedtab.protocol.steps import SumRequest, canonical_json
from fedtab.securesum.base import Share
from fedtab.transport import chunks
from fedtab.transport.generated import fedtab_pb2 as pb
from fedtab.transport.messages import (
    JobAssignment,
    JobStatus,
    Registration,
    UploadAck,
)
from fedtab.transport.options import CHUNK_BYTES, MAX_PAYLOAD_BYTES

SESSION_METADATA_KEY = "fedtab-session"  # gRPC metadata: the bank's session (schemas/)


def _json_loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WireFormatError(f"{what} is not valid JSON: {exc}") from exc


def request_to_json(request: SumRequest | None) -> str:
    return "" if request is None else canonical_json(request.to_dict()).decode()


def request_from_json(text: str) -> SumRequest | None:
    if not text:
        return None
    try:
        return SumRequest.from_dict(_json_loads(text, "step request"))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireFormatError(f"malformed step request: {exc}") from exc


def tag_to_proto(tag: Tag) -> pb.Tag:
    return pb.Tag(
        job_id=tag.job_id,
        step_index=tag.step_index,
        step_id=tag.step_id,
        bank=tag.bank,
        key_fingerprint=tag.key_fingerprint,
        request_digest=tag.request_digest,
    )


def tag_from_proto(msg: pb.Tag) -> Tag:
    return Tag(
        job_id=msg.job_id,
        step_index=int(msg.step_index),
        step_id=msg.step_id,
        bank=msg.bank,
        key_fingerprint=msg.key_fingerprint,
        request_digest=msg.request_digest,
    )


def upload_to_proto(upload: Upload, chunk_bytes: int = CHUNK_BYTES) -> Iterator[pb.UploadChunk]:
    """The client-stream of an upload: a header chunk, then the payload in pieces."""
    header = pb.UploadHeader(
        kind=upload.kind.name,
        tag=tag_to_proto(upload.tag),
        request_json=request_to_json(upload.request),
        shard_start=upload.shard_start,
        shard_stop=upload.shard_stop,
        content_digest=upload.content_digest,
        total_bytes=len(upload.payload),
    )
    yield pb.UploadChunk(header=header)
    for piece in chunks.split(upload.payload, chunk_bytes):
        yield pb.UploadChunk(data=piece)


def upload_from_proto(stream: Iterable[pb.UploadChunk],
                      allowed: Callable[[Upload], int] | None = None) -> Upload:
    """Join an upload stream; raises WireFormatError on a missing header or bad digest.

    ``allowed`` gets the upload as its header describes it (empty payload) and returns the
    most bytes its payload may have (the receiver's bound; it may raise to refuse the upload):
    nothing beyond that is read or held (:func:`fedtab.transport.chunks.receive`).
    """
    iterator = iter(stream)
    first = next(iterator, None)
    if first is None or first.WhichOneof("part") != "header":
        raise WireFormatError("upload stream does not start with a header")
    header = first.header
    try:
        kind = PayloadKind(header.kind)
    except ValueError as exc:
        raise WireFormatError(f"unknown payload kind {header.kind}") from exc
    if not 0 <= header.total_bytes <= MAX_PAYLOAD_BYTES:
        raise WireFormatError(
            f"upload of {header.total_bytes} bytes refused (limit {MAX_PAYLOAD_BYTES})"
        )
    head = Upload(
        kind=kind,
        tag=tag_from_proto(header.tag),
        payload=b"",
        request=request_from_json(header.request_json),
        shard_start=int(header.shard_start),
        shard_stop=int(header.shard_stop),
    )
    limit = MAX_PAYLOAD_BYTES if allowed is None else min(allowed(head), MAX_PAYLOAD_BYTES)
    payload = chunks.receive(_data_pieces(iterator), int(header.total_bytes),
                             header.content_digest, limit)
    return replace(head, payload=payload)


def _data_pieces(iterator: Iterator[pb.UploadChunk]) -> Iterator[bytes]:
    for chunk in iterator:
        if chunk.WhichOneof("part") != "data":
            raise WireFormatError("upload stream has a second header")
        yield chunk.data


def ack_to_proto(ack: UploadAck) -> pb.UploadAck:
    return pb.UploadAck(duplicate=ack.duplicate)


def ack_from_proto(msg: pb.UploadAck) -> UploadAck:
    return UploadAck(duplicate=msg.duplicate)


def payload_to_chunks(payload: bytes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[pb.DataChunk]:
    """The server-stream of a download; the first chunk carries size and digest."""
    for i, piece in enumerate(chunks.split(payload, chunk_bytes)):
        if i == 0:
            yield pb.DataChunk(
                data=piece, total_bytes=len(payload), content_digest=sha256_hex(payload)
            )
        else:
            yield pb.DataChunk(data=piece)


def payload_from_chunks(stream: Iterable[pb.DataChunk]) -> bytes:
    """Join a download stream and verify it; raises WireFormatError."""
    iterator = iter(stream)
    first = next(iterator, None)
    if first is None:
        raise WireFormatError("empty download stream")
    pieces = [first.data, *(c.data for c in iterator)]
    return chunks.join(pieces, int(first.total_bytes), first.content_digest)


def _parse(message: Any, data: bytes, what: str) -> Any:
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise WireFormatError(f"{what} does not parse: {exc}") from exc
    return message


def shards_to_bytes(shards: Sequence[Share]) -> bytes:
    msg = pb.ShardSet(
        shards=[pb.SealedShard(bank=s.bank, start=s.start, stop=s.stop, sealed=s.sealed)
                for s in shards]
    )
    return msg.SerializeToString()


def shards_from_bytes(data: bytes) -> list[Share]:
    msg = _parse(pb.ShardSet(), data, "shard set")
    return [Share(s.bank, int(s.start), int(s.stop), s.sealed) for s in msg.shards]


def committed_to_bytes(steps: Sequence[CommittedStep]) -> bytes:
    msg = pb.CommittedSteps(
        steps=[
            pb.CommittedStep(
                index=s.index,
                request_json=request_to_json(s.request),
                proposal_json=canonical_json(s.proposal).decode(),
            )
            for s in steps
        ]
    )
    return msg.SerializeToString()


def committed_from_bytes(data: bytes) -> list[CommittedStep]:
    msg = _parse(pb.CommittedSteps(), data, "committed steps")
    out = []
    for s in msg.steps:
        request = request_from_json(s.request_json)
        if request is None:
            raise WireFormatError(f"committed step {s.index} has no request")
        out.append(CommittedStep(int(s.index), request, _json_loads(s.proposal_json, "proposal")))
    return out


def artifacts_to_bytes(artifacts: dict[str, bytes]) -> bytes:
    msg = pb.ArtifactSet(
        artifacts=[pb.Artifact(name=k, content=v) for k, v in sorted(artifacts.items())]
    )
    return msg.SerializeToString()


def artifacts_from_bytes(data: bytes) -> dict[str, bytes]:
    msg = _parse(pb.ArtifactSet(), data, "artifact set")
    return {a.name: a.content for a in msg.artifacts}


def registration_to_proto(reg: Registration) -> pb.RegisterReply:
    return pb.RegisterReply(consortium_id=reg.consortium_id, banks=list(reg.banks),
                            session=reg.session)


def registration_from_proto(msg: pb.RegisterReply) -> Registration:
    return Registration(consortium_id=msg.consortium_id, banks=tuple(msg.banks),
                        session=msg.session)


def session_metadata(session: str | None) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata carrying a bank's session on every call after ``Register``."""
    return ((SESSION_METADATA_KEY, session),) if session else ()


def session_from_metadata(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The session a call carries, or None when it carries none."""
    for key, value in metadata or ():
        if key == SESSION_METADATA_KEY and value:
            return str(value)[:64]
    return None


def assignment_to_proto(job: JobAssignment | None) -> pb.NextTaskReply:
    if job is None:
        return pb.NextTaskReply(has_job=False)
    return pb.NextTaskReply(
        has_job=True,
        job=pb.JobAssignment(
            job_id=job.job_id,
            spec_json=canonical_json(job.spec).decode(),
            banks=list(job.banks),
        ),
    )


def assignment_from_proto(msg: pb.NextTaskReply) -> JobAssignment | None:
    if not msg.has_job:
        return None
    job = msg.job
    return JobAssignment(
        job_id=job.job_id,
        spec=_json_loads(job.spec_json, "job spec"),
        banks=tuple(job.banks),
    )


def step_status_to_proto(status: StepStatus) -> pb.StepStatus:
    return pb.StepStatus(
        job_id=status.job_id,
        job_state=status.job_state,
        step_index=status.step_index,
        phase=status.phase,
        have_contribution=status.have_contribution,
        have_shard=status.have_shard,
        have_proposal=status.have_proposal,
        have_result=status.have_result,
        message=status.message,
    )


def step_status_from_proto(msg: pb.StepStatus) -> StepStatus:
    return StepStatus(
        job_id=msg.job_id,
        job_state=msg.job_state,
        step_index=int(msg.step_index),
        phase=msg.phase,
        have_contribution=msg.have_contribution,
        have_shard=msg.have_shard,
        have_proposal=msg.have_proposal,
        have_result=msg.have_result,
        message=msg.message,
    )


def job_status_to_proto(status: JobStatus) -> pb.JobStatusReply:
    return pb.JobStatusReply(
        job_id=status.job_id,
        state=status.state,
        step_index=status.step_index,
        step_id=status.step_id,
        description=status.description,
        phase=status.phase,
        elapsed_seconds=status.elapsed_seconds,
        message=status.message,
        waiting_for=list(status.waiting_for),
        banks=list(status.banks),
        version=status.version,
        traffic=dict(status.traffic),
    )


def job_status_from_proto(msg: pb.JobStatusReply) -> JobStatus:
    return JobStatus(
        job_id=msg.job_id,
        state=msg.state,
        step_index=int(msg.step_index),
        step_id=msg.step_id,
        description=msg.description,
        phase=msg.phase,
        elapsed_seconds=float(msg.elapsed_seconds),
        message=msg.message,
        waiting_for=tuple(msg.waiting_for),
        banks=tuple(msg.banks),
        version=int(msg.version),
        traffic={str(k): float(v) for k, v in msg.traffic.items()},
    )


def json_object(text: str, what: str) -> dict[str, Any]:
    """Parse a JSON object sent on the wire; raises WireFormatError."""
    value = _json_loads(text, what)
    if not isinstance(value, dict):
        raise WireFormatError(f"{what} must be a JSON object")
    return value
