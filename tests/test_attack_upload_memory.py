"""Issue 11 item 8, run as the attacker: an authenticated bank streams far more than its step
allows, to exhaust the aggregator's memory.

The attacker holds only a bank's own view: its bundle (certificate, keys) and the job it was
assigned. The honest GBDT job is held at step 0 (bank_c, the attacker, is registered by hand
and its agent not started), so every attempt hits a live step. Each attempt streams 64 MiB of
1 MiB chunks over real mTLS gRPC on loopback. What the aggregator took in is measured twice:
the bytes the attacker's own request iterator was asked for (the server pulls them, so this is
at most what it consumed plus HTTP/2 flow-control windows), and the peak of Python memory
allocated in this process while the stream ran (``tracemalloc``; the server is in-process,
payload bytes it receives are Python objects). Positive control: with the proposal bound set
to the old 1 GiB, the same stream is read to its end. Then bank_c's agent starts and the
honest job completes with the in-memory runner's model.
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from harness import BANKS, InProcessConsortium, local_reference, make_frames, new_consortium
from harness import write_tables as write_bank_tables

from fedtab.consortium import load_bank_bundle
from fedtab.crypto import EncodingSpec, Encryptor
from fedtab.crypto.keys import PrivateKey
from fedtab.crypto.wire import encrypted_vector_to_bytes
from fedtab.jobs import JobSpec, create_trainer
from fedtab.protocol.exchange import PayloadKind, Tag, Upload, request_digest, sum_context
from fedtab.protocol.steps import JobContext, SumRequest
from fedtab.securesum.base import Aggregate
from fedtab.securesum.sealing import generate_shard_key
from fedtab.securesum.shared_key_aggregator import SharedKeyAggregator
from fedtab.securesum.shared_key_bank import SharedKeyBank
from fedtab.transport import convert
from fedtab.transport.client import aggregator_stub, open_channel
from fedtab.transport.generated import fedtab_pb2 as pb
from fedtab.transport.options import MAX_PAYLOAD_BYTES, UploadLimits

GBDT = {"n_estimators": 2, "max_depth": 2, "max_bin": 8, "learning_rate": 0.3}
SPEC = JobSpec(kind="gbdt", params=GBDT, seed=4)
MIB = 1 << 20
STREAMED = 64 * MIB  # what the attacker sends each time
PIECE = b"\0" * MIB
STREAMED_DIGEST = hashlib.sha256(b"\0" * STREAMED).hexdigest()


@dataclass
class Attempt:
    """One attack stream's outcome: the status, its message, what was pulled and held."""

    code: grpc.StatusCode | None
    details: str
    pulled: int  # payload bytes the server pulled from the attacker's stream
    peak: int  # peak Python memory allocated in this process while it ran


def stream(header: pb.UploadHeader, total: int, counter: list[int]) -> Iterator[pb.UploadChunk]:
    """The header, then ``total`` bytes in 1 MiB chunks, counting what gRPC pulled."""
    yield pb.UploadChunk(header=header)
    sent = 0
    while sent < total:
        piece = PIECE[: min(MIB, total - sent)]
        counter[0] += len(piece)
        sent += len(piece)
        yield pb.UploadChunk(data=piece)


def attack(stub: Any, header: pb.UploadHeader, total: int = STREAMED) -> Attempt:
    counter = [0]
    tracemalloc.start()
    try:
        stub.Upload(stream(header, total, counter), timeout=60)
        code, details = None, ""
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""  # type: ignore[attr-defined]
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Attempt(code, details, counter[0], peak)


def header_of(upload: Upload, declared: int) -> pb.UploadHeader:
    """``upload``'s header declaring ``declared`` bytes, with the digest of the 64 MiB sent."""
    header = next(iter(convert.upload_to_proto(upload))).header
    header.total_bytes = declared
    header.content_digest = STREAMED_DIGEST
    return header


def wait_status(client: Any, job_id: str, done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + 120
    status = client.status(job_id)
    while not done(status):
        assert status.state not in ("failed", "done"), status
        assert time.monotonic() < deadline, status
        status = client.status(job_id, wait=1.0, known_version=status.version)
    return status


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("upload-memory")
    contract, tables = write_bank_tables(root / "data", make_frames(seed=21, rows=150))
    consortium = new_consortium(root / "consortium", contract, key_bits=1024)
    return {"consortium": consortium, "tables": tables}


def test_a_bank_cannot_make_the_aggregator_buffer_more_than_its_step_allows(
        world: dict[str, Any]) -> None:
    consortium, tables = world["consortium"], world["tables"]
    attacker = load_bank_bundle(consortium / "banks" / "bank_c")
    with InProcessConsortium(consortium, tables, start_banks=BANKS[:2]) as cons, \
            cons.operator_client() as client:
        coordinator = cons.coordinator
        coordinator.upload_limits = UploadLimits(proposal_bytes=MIB)  # this step allows 1 MiB
        channel = open_channel(attacker.tls, cons.address)
        bank_c = aggregator_stub(channel)
        fp = attacker.public_key.fingerprint
        bank_c.Register(pb.RegisterRequest(bank="bank_c", key_fingerprint=fp), timeout=10)
        job_id = client.submit(SPEC)
        wait_status(client, job_id, lambda s: s.waiting_for == ("bank_c",))

        # The attacker's legitimate view: the job, its step-0 request, its own contribution.
        ctx = JobContext(job_id, "bank_c", BANKS, SPEC.seed, dict(SPEC.params))
        request = create_trainer(SPEC, ctx, cons.tables["bank_c"]).next_request()
        assert request is not None
        tag = Tag(job_id, 0, request.step_id, "bank_c", fp, request_digest(request))
        allowed = SharedKeyAggregator(attacker.public_key).contribution_bytes(
            sum_context(job_id, 0, request, BANKS, fp))
        assert allowed < MIB

        contribution = Upload(PayloadKind.CONTRIBUTION, tag, b"", request=request)
        declared_huge = attack(bank_c, header_of(contribution, STREAMED))
        lying_header = attack(bank_c, header_of(contribution, allowed))
        bogus = SumRequest(request.step_id, 1 << 30, request.encoding)  # vouched by nobody else
        bigger_request = attack(bank_c, header_of(
            Upload(PayloadKind.CONTRIBUTION, tag, b"", request=bogus), STREAMED))
        proposal = attack(bank_c, header_of(Upload(PayloadKind.PROPOSAL, tag, b""), STREAMED))

        # Positive control: the same proposal stream under the old bound (1 GiB) is read fully.
        coordinator.upload_limits = UploadLimits(proposal_bytes=MAX_PAYLOAD_BYTES)
        control = attack(bank_c, header_of(Upload(PayloadKind.PROPOSAL, tag, b""), STREAMED))
        coordinator.upload_limits = UploadLimits()
        channel.close()

        status = client.status(job_id)  # nothing the attacker sent was recorded
        assert (status.state, status.step_index, status.phase, status.waiting_for) == \
            ("running", 0, "contribute", ("bank_c",))
        cons.start_bank("bank_c")
        final = client.wait(job_id, timeout=180)
        artifacts = client.fetch_artifacts(job_id)

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert (declared_huge.code, proposal.code) == (invalid, invalid)
    assert f"upload of {STREAMED} bytes refused: this step allows at most {allowed}" in \
        declared_huge.details
    assert f"upload of {STREAMED} bytes refused: this step allows at most {MIB}" in \
        proposal.details
    assert lying_header.code is invalid
    assert "longer than its header says" in lying_header.details
    # Once another bank's contribution fixed the step's request, the bound follows from that
    # request, not from the one the attacker writes in its header (a billion values).
    assert bigger_request.code is invalid
    assert f"this step allows at most {allowed}" in bigger_request.details
    for refused in (declared_huge, lying_header, bigger_request, proposal):
        assert "\n" not in refused.details
        assert refused.pulled <= STREAMED // 4, refused  # observed 1-4 MiB, not 64
        assert refused.peak <= STREAMED // 4, refused  # observed 0-4 MiB
    assert control.code is invalid and "proposal is not JSON" in control.details
    assert control.pulled == STREAMED
    assert control.peak >= STREAMED
    assert final.state == "done"
    assert artifacts == local_reference(consortium, tables, SPEC, job_id)
    print(f"\nallowed contribution {allowed} B; attack pulled/peak MiB: "
          f"declared {declared_huge.pulled / MIB:.1f}/{declared_huge.peak / MIB:.1f}, "
          f"lying header {lying_header.pulled / MIB:.1f}/{lying_header.peak / MIB:.1f}, "
          f"proposal {proposal.pulled / MIB:.1f}/{proposal.peak / MIB:.1f}; "
          f"control {control.pulled / MIB:.1f}/{control.peak / MIB:.1f}")


def test_upload_bounds_fit_what_honest_banks_send(small_private_key: PrivateKey) -> None:
    """The bounds are tight: an honest contribution fits, an honest share is exactly its size."""
    public = small_private_key.public
    encoding = EncodingSpec(frac_bits=20, clip=1000.0, max_summands=len(BANKS))
    request = SumRequest("s", 1000, encoding)
    ctx = sum_context("job", 0, request, BANKS, public.fingerprint)
    side = SharedKeyAggregator(public)
    bank = SharedKeyBank.open("bank_b", small_private_key, generate_shard_key())
    try:
        values = np.linspace(0.0, 5.0, request.length)
        own = bank.contribute(ctx, values)
        assert len(own) <= side.contribution_bytes(ctx)
        encryptor = Encryptor(public)
        vectors = [side.validate(ctx, encrypted_vector_to_bytes(encryptor.encrypt(values,
                                                                                  encoding)))
                   for _ in BANKS]
        aggregate = side.add(ctx, vectors)
        share = bank.decrypt_share(ctx, aggregate.data)
        assert len(share.sealed) == side.share_bytes(ctx, aggregate, "bank_b")
        assert side.share_bytes(ctx, Aggregate(b"", 0), "bank_b") == 28  # nonce and tag only
    finally:
        bank.close()


def test_a_first_contribution_is_bounded_until_another_bank_confirms_its_request(
        small_private_key: PrivateKey) -> None:
    """Coordinator level: the first contribution of a step names its own request; its bound is
    capped by ``first_contribution_bytes``; after one is accepted, the held request decides."""
    from test_aggregator_coordinator import (
        Bank,
        contribution,
        make_coordinator,
        request_for,
        start_job,
    )
    from test_aggregator_coordinator import tag as tag_for

    from fedtab.crypto.decryptor import Decryptor
    from fedtab.errors import ProtocolError

    shard_key = generate_shard_key()
    banks = {b: Bank(b, Encryptor(small_private_key.public), Decryptor(small_private_key),
                     shard_key) for b in BANKS}
    coord = make_coordinator(small_private_key)
    job_id = start_job(coord)
    fp = coord.fingerprint
    bogus = SumRequest("step/0", 1 << 30, request_for(0).encoding)
    first = Upload(PayloadKind.CONTRIBUTION, tag_for(job_id, 0, "bank_c", bogus, fp), b"",
                   request=bogus)
    assert coord.upload_limit(banks["bank_c"].caller, first) == 256 * MIB
    coord.upload_limits = UploadLimits(first_contribution_bytes=MIB)
    assert coord.upload_limit(banks["bank_c"].caller, first) == MIB

    coord.upload(banks["bank_a"].caller, contribution(coord, banks["bank_a"], job_id, 0))
    shard = Upload(PayloadKind.SHARD, tag_for(job_id, 0, "bank_c", request_for(0), fp), b"")
    with pytest.raises(ProtocolError, match="shard from bank_c not expected: step 0 is in "
                                            "phase contribute"):
        coord.upload_limit(banks["bank_c"].caller, shard)
    honest = SharedKeyAggregator(small_private_key.public).contribution_bytes(
        sum_context(job_id, 0, request_for(0), BANKS, fp))
    lying = Upload(PayloadKind.CONTRIBUTION,
                   tag_for(job_id, 0, "bank_c", request_for(0), fp), b"", request=bogus)
    assert coord.upload_limit(banks["bank_c"].caller, lying) == honest < 4096
    abort = Upload(PayloadKind.ABORT, tag_for(job_id, 0, "bank_c", None, fp), b"")
    assert coord.upload_limit(banks["bank_c"].caller, abort) == MIB
