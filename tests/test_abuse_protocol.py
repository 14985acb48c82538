"""Protocol abuse against a live aggregator: every attempt is refused with a clear gRPC status,
logged, and the honest banks' job still completes with the correct model — in the same test.

The honest GBDT job is held at step 0 (bank_c is registered by hand but its agent is not
started yet), so the attempts hit a live, uncommitted step deterministically; then bank_c's
agent starts and, once steps are committed, replays of old steps are tried. The final model
must equal the in-memory runner's (``local_reference``), which the uninterrupted distributed
run equals (``test_transport_inprocess``). Identity cases already covered one by one in
``test_transport_grpc.test_identity_rules_over_mtls`` and ``test_aggregator_coordinator`` are
repeated here only where the sign-off needs them in one run with the honest job.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from harness import BANKS, InProcessConsortium, local_reference, make_frames, new_consortium
from harness import write_tables as write_bank_tables

from fedtab.consortium import load_bank_bundle, load_operator_bundle
from fedtab.crypto import EncodingSpec, Encryptor
from fedtab.crypto.keys import PrivateKey
from fedtab.crypto.wire import HEADER_SIZE, TRAILER_SIZE, encrypted_vector_to_bytes
from fedtab.jobs import JobSpec, create_trainer
from fedtab.protocol.exchange import PayloadKind, Tag, Upload, request_digest
from fedtab.protocol.steps import JobContext, SumRequest
from fedtab.transport import convert, tls
from fedtab.transport.client import aggregator_stub, open_channel
from fedtab.transport.generated import fedtab_pb2 as pb

GBDT = {"n_estimators": 2, "max_depth": 2, "max_bin": 8, "learning_rate": 0.3}
SPEC = JobSpec(kind="gbdt", params=GBDT, seed=4)
Code = grpc.StatusCode


def encrypt_contribution(encryptor: Encryptor, request: SumRequest, values: np.ndarray) -> bytes:
    """A bank's encrypted contribution bytes, as the shared-key backend makes them."""
    return encrypted_vector_to_bytes(encryptor.encrypt(np.asarray(values, float), request.encoding))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("abuse")
    contract, tables = write_bank_tables(root / "data", make_frames(seed=21, rows=150))
    consortium = new_consortium(root / "consortium", contract, key_bits=1024)
    return {"consortium": consortium, "tables": tables}


class Attacker:
    """Raw gRPC calls with any identity; records each refusal as (case, status, message)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channels: list[grpc.Channel] = []
        self.seen: list[tuple[str, str, str]] = []

    def stub(self, identity: tls.TlsIdentity, limits: bool = True) -> Any:
        channel = (open_channel(identity, self.address) if limits else
                   grpc.secure_channel(self.address, tls.channel_credentials(identity)))
        self.channels.append(channel)
        return aggregator_stub(channel)

    def refused(self, case: str, code: grpc.StatusCode, text: str,
                call: Callable[[], object]) -> str:
        with pytest.raises(grpc.RpcError) as info:
            call()
        error = info.value
        details = error.details() or ""  # type: ignore[attr-defined]
        assert error.code() is code, (case, error.code(), details)  # type: ignore[attr-defined]
        assert text in details, (case, details)
        self.seen.append((case, code.name, details))
        return details

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def upload(stub: Any, item: Upload) -> Any:
    return stub.Upload(convert.upload_to_proto(item), timeout=15)


def patch(vector: bytes, offset: int, new: bytes) -> bytes:
    """``vector`` with bytes at ``offset`` replaced and its CRC recomputed (a crafted vector)."""
    body = vector[:-TRAILER_SIZE]
    body = body[:offset] + new + body[offset + len(new):]
    return body + struct.pack(">I", zlib.crc32(body))


def foreign_identity(ours: tls.TlsIdentity) -> tls.TlsIdentity:
    """A bank certificate from another CA (trusting our CA for the server)."""
    ca_cert, ca_key = tls.create_ca("someone else's CA")
    cert, key = tls.issue_certificate(ca_cert, ca_key, "bank_c", "bank")
    return tls.TlsIdentity(ours.ca_cert_pem, cert, key)


def our_ca_identity(consortium: Path, name: str, **kw: Any) -> tls.TlsIdentity:
    """A bank certificate issued by the consortium's own CA (e.g. expired, or unknown name)."""
    ca_cert = (consortium / "ca" / "ca.pem").read_bytes()
    ca_key = (consortium / "ca" / "ca.key").read_bytes()
    cert, key = tls.issue_certificate(ca_cert, ca_key, name, "bank", **kw)
    return tls.TlsIdentity(ca_cert, cert, key)


def wait_status(client: Any, job_id: str, done: Callable[[Any], bool], timeout: float = 120
                ) -> Any:
    import time

    deadline = time.monotonic() + timeout
    status = client.status(job_id)
    while not done(status):
        assert status.state not in ("failed", "done"), status
        assert time.monotonic() < deadline, status
        status = client.status(job_id, wait=1.0, known_version=status.version)
    return status


def test_abuse_is_refused_and_the_honest_job_completes(world: dict[str, Any],
                                                       small_private_key: PrivateKey,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    consortium, tables = world["consortium"], world["tables"]
    caplog.set_level(logging.INFO, logger="fedtab.aggregator")
    bundles = {b: load_bank_bundle(consortium / "banks" / b) for b in BANKS}
    operator_tls = load_operator_bundle(consortium / "operator").tls
    with InProcessConsortium(consortium, tables, start_banks=BANKS[:2]) as cons, \
            cons.operator_client() as client:
        evil = Attacker(cons.address)
        fp = cons.coordinator.fingerprint
        bank_a, bank_c = evil.stub(bundles["bank_a"].tls), evil.stub(bundles["bank_c"].tls)
        # bank_c attaches by hand, so the job runs but stays at step 0 until its agent starts.
        bank_c.Register(pb.RegisterRequest(bank="bank_c", key_fingerprint=fp), timeout=10)
        job_id = client.submit(SPEC)
        status = wait_status(client, job_id, lambda s: s.waiting_for == ("bank_c",))
        assert (status.state, status.step_index, status.phase) == ("running", 0, "contribute")

        # The step-0 request every bank computes, and a well-formed bank_c contribution.
        ctx = JobContext(job_id, "bank_c", BANKS, SPEC.seed, dict(SPEC.params))
        trainer = create_trainer(SPEC, ctx, cons.tables["bank_c"])
        request = trainer.next_request()
        assert request is not None
        values = trainer.contribution(request)
        encryptor = Encryptor(cons.coordinator.public_key)
        good = encrypt_contribution(encryptor, request, values)

        def contribution(payload: bytes, *, bank: str = "bank_c", step: int = 0,
                         key: str = fp, req: SumRequest = request) -> Upload:
            tag = Tag(job_id, step, req.step_id, bank, key, request_digest(req))
            return Upload(PayloadKind.CONTRIBUTION, tag, payload, request=req)

        # --- certificates and identities ---------------------------------------------------
        evil.refused("certificate from another CA", Code.UNAVAILABLE, "", lambda: evil.stub(
            foreign_identity(bundles["bank_c"].tls)).Register(
                pb.RegisterRequest(bank="bank_c", key_fingerprint=fp), timeout=5))
        start = datetime.now(UTC) - timedelta(days=3)
        expired = our_ca_identity(consortium, "bank_c", valid_days=1, not_before=start)
        evil.refused("expired certificate (our CA)", Code.UNAVAILABLE, "", lambda: evil.stub(
            expired).Register(pb.RegisterRequest(bank="bank_c", key_fingerprint=fp), timeout=5))
        mallory = evil.stub(our_ca_identity(consortium, "mallory"))
        evil.refused("unknown bank certificate (our CA)", Code.PERMISSION_DENIED,
                     "certificate 'mallory' is not a consortium bank",
                     lambda: upload(mallory, contribution(good, bank="mallory")))
        evil.refused("bank_a impersonating bank_c", Code.PERMISSION_DENIED,
                     "bank 'bank_a' sent a message in the name of 'bank_c'",
                     lambda: upload(bank_a, contribution(good)))
        evil.refused("job submitted with a bank certificate", Code.PERMISSION_DENIED,
                     "only the operator may do this, not bank 'bank_c'",
                     lambda: bank_c.SubmitJob(pb.SubmitJobRequest(
                         spec_json='{"job": {"kind": "profile"}}'), timeout=5))
        evil.refused("artifacts fetched with a bank certificate", Code.PERMISSION_DENIED,
                     "only the operator", lambda: list(bank_c.Download(pb.DownloadRequest(
                         kind="ARTIFACTS", job_id=job_id), timeout=5)))
        operator = evil.stub(operator_tls)
        evil.refused("operator uploading as a bank", Code.PERMISSION_DENIED,
                     "operator 'operator' may not call bank RPCs",
                     lambda: upload(operator, contribution(good)))
        evil.refused("wrong key fingerprint in the tag", Code.FAILED_PRECONDITION,
                     "bank 'bank_c' used key abababababababab..., the consortium key is",
                     lambda: upload(bank_c, contribution(good, key="ab" * 32)))

        # --- ciphertexts, encodings and wire format -------------------------------------------
        other_key = encrypt_contribution(Encryptor(small_private_key.public), request, values)
        evil.refused("vector under another Paillier key", Code.INVALID_ARGUMENT,
                     "vector was encrypted under key",
                     lambda: upload(bank_c, contribution(other_key)))
        n = cons.coordinator.public_key.n
        width = (2 * cons.coordinator.public_key.bits + 7) // 8
        p = bundles["bank_c"].private_key.p
        for label, value, text in [("zero", 0, "lies outside (0, n^2)"),
                                   ("n^2", n * n, "lies outside (0, n^2)"),
                                   ("n^2 + 1", n * n + 1, "lies outside (0, n^2)"),
                                   ("a multiple of p", p, "is not coprime to n")]:
            crafted = patch(good, HEADER_SIZE, value.to_bytes(width, "big"))
            evil.refused(f"ciphertext out of range: {label}", Code.INVALID_ARGUMENT,
                         f"ciphertext 0 {text}", lambda c=crafted: upload(bank_c, contribution(c)))
        per_offset = HEADER_SIZE - 10  # 'values per plaintext' (slot count), then count, width
        slots = struct.unpack_from(">I", good, per_offset)[0]
        wrong_slots = patch(good, per_offset, struct.pack(">I", slots + 1))
        evil.refused("wrong slot count in the vector header", Code.INVALID_ARGUMENT,
                     "inconsistent header (slot layout, count or summands)",
                     lambda: upload(bank_c, contribution(wrong_slots)))
        enc = request.encoding
        other_spec = EncodingSpec(frac_bits=enc.frac_bits + 1, clip=enc.clip,
                                  max_summands=enc.max_summands)
        other_encoding = encrypt_contribution(
            encryptor, SumRequest(request.step_id, request.length, other_spec), values)
        evil.refused("wrong encoding", Code.INVALID_ARGUMENT,
                     "contribution uses another encoding than the step request",
                     lambda: upload(bank_c, contribution(other_encoding)))
        longer = encrypt_contribution(
            encryptor, SumRequest(request.step_id, request.length + 1, enc),
            np.append(values, 0.0))
        evil.refused("wrong vector length", Code.INVALID_ARGUMENT,
                     f"contribution has {request.length + 1} values, the request says "
                     f"{request.length}", lambda: upload(bank_c, contribution(longer)))
        evil.refused("truncated vector", Code.INVALID_ARGUMENT,
                     "checksum mismatch: the vector is truncated or corrupt",
                     lambda: upload(bank_c, contribution(good[:-100])))
        rng = np.random.default_rng(0)
        evil.refused("garbage contribution", Code.INVALID_ARGUMENT, "bad magic",
                     lambda: upload(bank_c, contribution(rng.bytes(4096))))
        proposal_tag = contribution(b"").tag
        evil.refused("garbage proposal", Code.INVALID_ARGUMENT,
                     "proposal is not JSON: 'utf-8' codec can't decode byte 0xff",
                     lambda: upload(bank_c, Upload(PayloadKind.PROPOSAL, proposal_tag,
                                                   b"\xff\x00garbage")))
        header = next(iter(convert.upload_to_proto(contribution(good))))
        short = pb.UploadChunk(header=header.header)
        evil.refused("truncated upload stream", Code.INVALID_ARGUMENT,
                     f"truncated: got 100 of {len(good)} bytes",
                     lambda: bank_c.Upload(iter([short, pb.UploadChunk(data=good[:100])]),
                                           timeout=10))
        evil.refused("stream without a header", Code.INVALID_ARGUMENT,
                     "upload stream does not start with a header",
                     lambda: bank_c.Upload(iter([pb.UploadChunk(data=good)]), timeout=10))
        huge = pb.UploadChunk(header=header.header)
        huge.header.total_bytes = 1 << 40
        evil.refused("oversized upload (declared 1 TiB)", Code.INVALID_ARGUMENT,
                     "upload of 1099511627776 bytes refused (limit 1073741824)",
                     lambda: bank_c.Upload(iter([huge]), timeout=10))
        unlimited = evil.stub(bundles["bank_c"].tls, limits=False)
        evil.refused("oversized gRPC message (9 MiB chunk)", Code.RESOURCE_EXHAUSTED,
                     "larger than max", lambda: unlimited.Upload(iter(
                         [short, pb.UploadChunk(data=b"\0" * (9 << 20))]), timeout=30))

        # --- steps and jobs ----------------------------------------------------------------
        evil.refused("future step", Code.FAILED_PRECONDITION,
                     f"step 7 of {job_id} not reached yet (current 0, bank bank_c)",
                     lambda: upload(bank_c, contribution(good, step=7)))
        evil.refused("unknown job", Code.FAILED_PRECONDITION, "unknown job 'job-9999-abcdef'",
                     lambda: bank_c.PollStep(pb.PollStepRequest(
                         job_id="job-9999-abcdef"), timeout=5))

        evil.refused("committed steps from a negative index", Code.FAILED_PRECONDITION,
                     "from_index must be >= 0", lambda: list(bank_c.Download(pb.DownloadRequest(
                         kind="COMMITTED", job_id=job_id, from_index=-5), timeout=5)))
        evil.refused("unknown download kind", Code.INVALID_ARGUMENT,
                     "unknown download kind 99", lambda: list(bank_c.Download(
                         pb.DownloadRequest(kind=99, job_id=job_id), timeout=5)))
        evil.refused("operator: job spec that is not JSON", Code.INVALID_ARGUMENT,
                     "job spec is not valid JSON", lambda: operator.SubmitJob(
                         pb.SubmitJobRequest(spec_json="{not json"), timeout=5))
        evil.refused("operator: unknown job kind", Code.INVALID_ARGUMENT,
                     "unknown job kind 'rootkit'", lambda: operator.SubmitJob(
                         pb.SubmitJobRequest(spec_json='{"job": {"kind": "rootkit"}}'),
                         timeout=5))

        # Nothing the attacker sent was recorded: the step still waits for bank_c alone.
        status = client.status(job_id)
        assert (status.state, status.step_index, status.phase, status.waiting_for) == \
            ("running", 0, "contribute", ("bank_c",))

        cons.start_bank("bank_c")
        wait_status(client, job_id, lambda s: s.step_index >= 2)
        evil.refused("replay of a committed step", Code.ALREADY_EXISTS,
                     f"replay rejected: step 0 of {job_id} is already committed (bank bank_c)",
                     lambda: upload(bank_c, contribution(good)))
        final = client.wait(job_id, timeout=180)
        artifacts = client.fetch_artifacts(job_id)
        evil.refused("replay after the job finished", Code.ALREADY_EXISTS,
                     f"job {job_id} is already finished",
                     lambda: upload(bank_c, contribution(good)))
        evil.close()

    assert final.state == "done"
    assert artifacts == local_reference(consortium, tables, SPEC, job_id)
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.name == "fedtab.aggregator")
    for case, code, details in evil.seen:
        # TLS handshake and gRPC size-limit refusals happen before any servicer code runs.
        if code not in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
            assert details.split(": ", 1)[-1] in logged, f"not logged: {case}"
    assert len(evil.seen) == 31
    print("\nabuse case | status | message")
    for case, code, details in evil.seen:
        print(f"{case} | {code} | {details}")


def test_a_refused_upload_does_not_fix_the_step_request(small_private_key: PrivateKey) -> None:
    """A malformed first upload naming a bogus request is refused and leaves no trace: the
    honest banks' request is the step's request and the step completes (regression: the
    refused upload used to fix the step's request, so the honest banks 'disagreed' and the job
    failed)."""
    from test_aggregator_coordinator import (
        BANKS as UNIT_BANKS,
    )
    from test_aggregator_coordinator import (
        OPERATOR,
        Bank,
        make_coordinator,
        run_step,
        start_job,
        vector,
    )

    from fedtab.crypto.decryptor import Decryptor
    from fedtab.errors import WireFormatError
    from fedtab.securesum.sealing import generate_shard_key
    from fedtab.transport.messages import Caller

    shard_key = generate_shard_key()
    banks = {b: Bank(b, Encryptor(small_private_key.public), Decryptor(small_private_key),
                     shard_key) for b in UNIT_BANKS}
    coord = make_coordinator(small_private_key)
    job_id = start_job(coord)
    bogus = SumRequest("evil/step", 5, EncodingSpec(frac_bits=3, clip=10.0, max_summands=8))
    tag = Tag(job_id, 0, bogus.step_id, "bank_a", coord.fingerprint, request_digest(bogus))
    with pytest.raises(WireFormatError, match="bad magic"):
        coord.upload(Caller("bank_a", "bank"),
                     Upload(PayloadKind.CONTRIBUTION, tag, b"garbage" * 20, request=bogus))
    total = run_step(coord, banks, job_id, 0)
    np.testing.assert_allclose(total, sum(vector(b, 0) for b in UNIT_BANKS), atol=1e-5)
    assert coord.job_status(OPERATOR, job_id, 0, -1).state == "running"
