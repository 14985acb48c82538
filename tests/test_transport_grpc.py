"""Wire level: generated code drift, message conversion and chunking, and the mTLS identity
rules of the gRPC service (unknown certificates, wrong roles, impersonation, replays)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from harness import REPO, InProcessConsortium, make_frames, new_consortium, write_tables

from fedtab.errors import WireFormatError
from fedtab.protocol.exchange import PayloadKind, Tag, Upload
from fedtab.transport import convert
from fedtab.transport.client import aggregator_stub, open_channel
from fedtab.transport.generated import fedtab_pb2 as pb


def test_generated_code_matches_the_schemas() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_proto.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_upload_round_trip_in_chunks() -> None:
    payload = bytes(range(256)) * 1000
    upload = Upload(PayloadKind.SHARD, Tag("j", 3, "s", "bank_a", "f" * 64, "d"), payload,
                    shard_start=4, shard_stop=9)
    chunks = list(convert.upload_to_proto(upload, chunk_bytes=10_000))
    assert len(chunks) == 1 + 26
    assert convert.upload_from_proto(chunks) == upload
    with pytest.raises(WireFormatError, match="truncated"):
        convert.upload_from_proto(chunks[:-1])
    longer = [*chunks, pb.UploadChunk(data=b"extra")]
    with pytest.raises(WireFormatError, match="longer"):
        convert.upload_from_proto(longer)
    stream = list(convert.payload_to_chunks(payload, chunk_bytes=4096))
    assert convert.payload_from_chunks(stream) == payload
    stream[1] = pb.DataChunk(data=b"x" * len(stream[1].data))
    with pytest.raises(WireFormatError, match="digest"):
        convert.payload_from_chunks(stream)


@pytest.fixture(scope="module")
def two_consortia(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("grpc")
    frames = make_frames(rows=80)
    contract, tables = write_tables(root / "data", frames)
    return {
        "ours": new_consortium(root / "ours", contract, key_bits=1024),
        "theirs": new_consortium(root / "theirs", contract, key_bits=1024),
        "tables": tables,
    }


def identity_of(folder: Path) -> object:
    """A party's TLS identity through the consortium loaders (any role)."""
    from fedtab import consortium

    if (folder / "bank.json").exists():
        return consortium.load_bank_bundle(folder).tls
    if folder.name == "operator":
        return consortium.load_operator_bundle(folder).tls
    return consortium.load_aggregator_bundle(folder).tls


def call_code(fn) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


def test_identity_rules_over_mtls(two_consortia: dict) -> None:
    ours, theirs = two_consortia["ours"], two_consortia["theirs"]
    with InProcessConsortium(ours, two_consortia["tables"]) as cons:
        def stub(folder: Path):  # type: ignore[no-untyped-def]
            channel = open_channel(identity_of(folder), cons.address)  # type: ignore[arg-type]
            return channel, aggregator_stub(channel)

        fingerprint = cons.coordinator.fingerprint
        # A certificate from another consortium's CA fails the TLS handshake.
        channel, foreign = stub(theirs / "banks" / "bank_a")
        code = call_code(lambda: foreign.Register(
            pb.RegisterRequest(bank="bank_a", key_fingerprint=fingerprint), timeout=5))
        assert code is grpc.StatusCode.UNAVAILABLE
        channel.close()
        # The operator may not act as a bank; a bank may not submit jobs.
        channel, operator = stub(ours / "operator")
        code = call_code(lambda: operator.NextTask(pb.NextTaskRequest(), timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        channel.close()
        channel, bank_a = stub(ours / "banks" / "bank_a")
        code = call_code(lambda: bank_a.SubmitJob(
            pb.SubmitJobRequest(spec_json='{"job": {"kind": "profile"}}'), timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        # A bank claiming to be another bank, or using another key, is refused.
        code = call_code(lambda: bank_a.Register(
            pb.RegisterRequest(bank="bank_b", key_fingerprint=fingerprint), timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        code = call_code(lambda: bank_a.Register(
            pb.RegisterRequest(bank="bank_a", key_fingerprint="00" * 32), timeout=5))
        assert code is grpc.StatusCode.FAILED_PRECONDITION
        channel.close()
        # The honest banks are still served.
        with cons.operator_client() as client:
            from fedtab.jobs import JobSpec

            job_id = client.submit(JobSpec(kind="profile"))
            assert client.wait(job_id, timeout=60).state == "done"
        # A replayed contribution for a finished job is rejected as a replay.
        from fedtab.protocol.exchange import request_digest
        from fedtab.protocol.steps import SumRequest

        request = SumRequest.from_dict({"step_id": "moments", "length": 1, "encoding": {
            "frac_bits": 1, "clip": 1.0, "max_summands": 3}})
        upload = Upload(PayloadKind.CONTRIBUTION,
                        Tag(job_id, 0, "moments", "bank_a", fingerprint,
                            request_digest(request)), b"x", request=request)
        channel, bank_a = stub(ours / "banks" / "bank_a")
        code = call_code(lambda: bank_a.Upload(convert.upload_to_proto(upload), timeout=5))
        assert code is grpc.StatusCode.ALREADY_EXISTS
        channel.close()
