"""Consortium creation and bundle loading: layout, modes, custody of secrets, clear errors."""

from __future__ import annotations

import json
import shutil
import stat
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from fedtab.consortium import (
    ConsortiumConfig,
    ConsortiumPaths,
    init_consortium,
    load_aggregator_bundle,
    load_bank_bundle,
    load_operator_bundle,
    parse_address,
)
from fedtab.crypto.keys import generate_keypair, save_private_key
from fedtab.data.contract import DataContract, FeatureSpec
from fedtab.errors import ConfigError, KeyMaterialError
from fedtab.transport.tls import channel_credentials, peer_identity, server_credentials

BANKS = ("bank-a", "bank_b", "bank.c")
SMALL = 512


@pytest.fixture(scope="module")
def contract() -> DataContract:
    return DataContract(
        features=(
            FeatureSpec("amount", "numeric", lower=0.0, upper=10_000.0),
            FeatureSpec("channel", "categorical", categories=("web", "pos")),
        ),
        label="is_fraud",
    )


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory, contract: DataContract) -> ConsortiumPaths:
    root = tmp_path_factory.mktemp("consortium") / "c"
    return init_consortium(
        root,
        contract,
        BANKS,
        key_bits=SMALL,
        aggregator_address="agg.example.org:50051",
        allow_small_key_for_tests=True,
    )


def _copy(paths: ConsortiumPaths, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(paths.root, target)
    return target


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_and_modes(consortium: ConsortiumPaths) -> None:
    root = consortium.root
    common = {"consortium.json", "contract.json", "ca.pem", "tls.pem", "tls.key"}
    assert {p.name for p in consortium.aggregator.iterdir()} == common | {"paillier_public.json"}
    assert {p.name for p in consortium.operator.iterdir()} == common
    assert sorted(consortium.banks) == sorted(BANKS)
    for name, folder in consortium.banks.items():
        assert folder == root / "banks" / name
        assert {p.name for p in folder.iterdir()} == common | {
            "paillier_public.json",
            "paillier_private.json",
            "shard_key.json",
            "bank.json",
        }
        assert json.loads((folder / "bank.json").read_text()) == {"name": name}
        for secret in ("paillier_private.json", "shard_key.json", "tls.key"):
            assert _mode(folder / secret) == 0o600, secret
    assert {p.name for p in (root / "ca").iterdir()} == {"ca.pem", "ca.key"}
    assert _mode(root / "ca" / "ca.key") == 0o600
    assert _mode(consortium.aggregator / "tls.key") == 0o600
    top = json.loads(consortium.config.read_text())
    assert set(top) >= {
        "consortium_id",
        "banks",
        "key_fingerprint",
        "aggregator_address",
        "key_bits",
        "created",
    }
    assert top["banks"] == list(BANKS) and top["key_bits"] == SMALL
    for folder in [consortium.aggregator, consortium.operator, *consortium.banks.values()]:
        assert json.loads((folder / "consortium.json").read_text()) == top
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_aggregator_and_operator_hold_no_secret(consortium: ConsortiumPaths) -> None:
    bank = load_bank_bundle(consortium.banks["bank-a"])
    key = bank.private_key
    needles = {
        format(key.p, "x"),
        format(key.q, "x"),
        format(key.p, "X"),
        format(key.q, "X"),
        str(key.p),
        str(key.q),
        bank.shard_key.hex(),
        bank.shard_key.hex().upper(),
    }
    ca_key = (consortium.ca / "ca.key").read_bytes()
    for folder in (consortium.aggregator, consortium.operator):
        for path in folder.rglob("*"):
            data = path.read_bytes()
            assert bank.shard_key not in data, path
            assert ca_key not in data, path
            text = data.decode("latin-1")
            for needle in needles:
                assert needle not in text, (path, needle[:8])
    for path in consortium.root.rglob("*"):  # the secrets do exist, in bank folders only
        if path.is_file() and format(key.p, "x") in path.read_text():
            assert path.name == "paillier_private.json" and path.parent.parent.name == "banks"


def test_bundles_load_and_agree(consortium: ConsortiumPaths, contract: DataContract) -> None:
    agg = load_aggregator_bundle(consortium.aggregator)
    op = load_operator_bundle(consortium.operator)
    banks = [load_bank_bundle(folder) for folder in consortium.banks.values()]
    assert agg.contract == op.contract == contract
    assert agg.config == op.config == ConsortiumConfig.load(consortium.root)
    assert agg.config.aggregator_address == "agg.example.org:50051"
    assert not hasattr(agg, "private_key") and not hasattr(agg, "shard_key")
    for bank, name in zip(banks, BANKS, strict=True):
        assert bank.name == name
        assert bank.public_key == agg.public_key == bank.private_key.public
        assert bank.public_key.fingerprint == agg.config.key_fingerprint
        assert bank.shard_key == banks[0].shard_key and len(bank.shard_key) == 32
        assert bank.config == agg.config
        assert str(bank.private_key.p) not in repr(bank)
        assert bank.shard_key.hex() not in repr(bank)


def test_config_round_trip(consortium: ConsortiumPaths) -> None:
    config = ConsortiumConfig.load(consortium.config)
    assert ConsortiumConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="key_fingerprint"):
        ConsortiumConfig.from_dict({**config.to_dict(), "key_fingerprint": "xyz"})
    with pytest.raises(ConfigError, match="malformed"):
        ConsortiumConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "banks"})


def test_mtls_between_bundles(consortium: ConsortiumPaths) -> None:
    agg = load_aggregator_bundle(consortium.aggregator)
    bank = load_bank_bundle(consortium.banks["bank.c"])
    op = load_operator_bundle(consortium.operator)

    def whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
        peer = peer_identity(context)
        return f"{peer.name}/{peer.role}".encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.S", {"M": grpc.unary_unary_rpc_method_handler(whoami)}
            ),
        )
    )
    port = server.add_secure_port("127.0.0.1:0", server_credentials(agg.tls))
    server.start()
    try:
        for tls, expected in ((bank.tls, b"bank.c/bank"), (op.tls, b"operator/operator")):
            with grpc.secure_channel(f"localhost:{port}", channel_credentials(tls)) as channel:
                assert channel.unary_unary("/t.S/M")(b"", timeout=10) == expected
    finally:
        server.stop(grace=None)


def test_refuses_to_overwrite(consortium: ConsortiumPaths, contract: DataContract) -> None:
    with pytest.raises(ConfigError, match="not empty"):
        init_consortium(
            consortium.root, contract, BANKS, key_bits=SMALL, allow_small_key_for_tests=True
        )
    assert load_aggregator_bundle(consortium.aggregator)  # untouched


def test_empty_existing_directory_is_fine(tmp_path: Path, contract: DataContract) -> None:
    (tmp_path / "c").mkdir()
    paths = init_consortium(
        tmp_path / "c", contract, ["solo"], key_bits=SMALL, allow_small_key_for_tests=True
    )
    assert load_bank_bundle(paths.banks["solo"]).name == "solo"


@pytest.mark.parametrize(
    ("banks", "message"),
    [
        ([], "at least one bank"),
        (["a", "a"], "twice"),
        (["a b"], "invalid"),
        (["a/b"], "invalid"),
        ([".."], "invalid"),
        (["x" * 65], "invalid"),
        (["aggregator"], "reserved"),
    ],
)
def test_bad_bank_names(
    tmp_path: Path, contract: DataContract, banks: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        init_consortium(
            tmp_path / "c", contract, banks, key_bits=SMALL, allow_small_key_for_tests=True
        )
    assert not (tmp_path / "c").exists()


def test_small_key_needs_explicit_permission(tmp_path: Path, contract: DataContract) -> None:
    with pytest.raises(KeyMaterialError, match="1024"):
        init_consortium(tmp_path / "c", contract, BANKS, key_bits=1024)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("address", ["nohost", "0.0.0.0:50051", "h:0", "h:70000", "bad_host:1"])
def test_bad_aggregator_address(tmp_path: Path, contract: DataContract, address: str) -> None:
    with pytest.raises(ConfigError, match="address"):
        init_consortium(
            tmp_path / "c",
            contract,
            BANKS,
            key_bits=SMALL,
            aggregator_address=address,
            allow_small_key_for_tests=True,
        )


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert parse_address("[::1]:8443") == ("::1", 8443)
    assert parse_address("agg.bank-consortium.example:443") == (
        "agg.bank-consortium.example",
        443,
    )


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("banks/bank-a/paillier_private.json", "paillier_private.json"),
        ("banks/bank-a/paillier_private.json", "backup.json"),
        ("banks/bank-a/paillier_private.json", "state/old-key"),
        ("banks/bank-a/shard_key.json", "shard_key.json"),
        ("banks/bank-a/shard_key.json", "notes.txt"),
        ("ca/ca.key", "ca.key"),
    ],
)
def test_aggregator_refuses_private_material(
    consortium: ConsortiumPaths, tmp_path: Path, source: str, name: str
) -> None:
    root = _copy(consortium, tmp_path)
    (root / "aggregator" / name).parent.mkdir(exist_ok=True)
    shutil.copy(root / source, root / "aggregator" / name)
    with pytest.raises(KeyMaterialError, match="refusing to start") as info:
        load_aggregator_bundle(root / "aggregator")
    assert name in str(info.value)


def test_bank_with_foreign_private_key_is_refused(
    consortium: ConsortiumPaths, tmp_path: Path
) -> None:
    root = _copy(consortium, tmp_path)
    folder = root / "banks" / "bank-a"
    (folder / "paillier_private.json").unlink()
    save_private_key(
        generate_keypair(SMALL, allow_small_for_tests=True), folder / "paillier_private.json"
    )
    with pytest.raises(KeyMaterialError, match=r"paillier_private\.json.*fingerprint"):
        load_bank_bundle(folder)


def test_bank_with_other_consortium_files_is_refused(
    consortium: ConsortiumPaths, tmp_path: Path, contract: DataContract
) -> None:
    other = init_consortium(
        tmp_path / "other", contract, BANKS, key_bits=SMALL, allow_small_key_for_tests=True
    )
    root = _copy(consortium, tmp_path)
    folder = root / "banks" / "bank-a"
    shutil.copy(other.banks["bank-a"] / "tls.pem", folder / "tls.pem")
    shutil.copy(other.banks["bank-a"] / "tls.key", folder / "tls.key")
    with pytest.raises(KeyMaterialError, match=r"tls\.pem.*not issued by"):
        load_bank_bundle(folder)
    shutil.copy(other.banks["bank-a"] / "ca.pem", folder / "ca.pem")
    with pytest.raises(KeyMaterialError, match=r"ca\.pem.*not this consortium's CA"):
        load_bank_bundle(folder)
    shutil.copy(other.banks["bank-a"] / "shard_key.json", root / "banks" / "bank_b")
    with pytest.raises(KeyMaterialError, match=r"shard_key\.json.*another consortium"):
        load_bank_bundle(root / "banks" / "bank_b")


def test_bank_certificate_of_another_bank_is_refused(
    consortium: ConsortiumPaths, tmp_path: Path
) -> None:
    root = _copy(consortium, tmp_path)
    for name in ("tls.pem", "tls.key"):
        shutil.copy(root / "banks" / "bank_b" / name, root / "banks" / "bank-a" / name)
    with pytest.raises(KeyMaterialError, match="names bank 'bank_b', expected bank 'bank-a'"):
        load_bank_bundle(root / "banks" / "bank-a")


@pytest.mark.parametrize(
    ("party", "victim", "error"),
    [
        ("aggregator", "paillier_public.json", KeyMaterialError),
        ("aggregator", "consortium.json", ConfigError),
        ("aggregator", "tls.key", KeyMaterialError),
        ("operator", "contract.json", ConfigError),
        ("banks/bank-a", "shard_key.json", KeyMaterialError),
        ("banks/bank-a", "bank.json", ConfigError),
        ("banks/bank-a", "paillier_private.json", KeyMaterialError),
    ],
)
def test_missing_or_corrupt_file_names_it(
    consortium: ConsortiumPaths,
    tmp_path: Path,
    party: str,
    victim: str,
    error: type[Exception],
) -> None:
    loaders = {
        "aggregator": load_aggregator_bundle,
        "operator": load_operator_bundle,
        "banks/bank-a": load_bank_bundle,
    }
    root = _copy(consortium, tmp_path)
    path = root / party / victim
    path.unlink()
    with pytest.raises(error, match=f"{victim}.*(missing|does not exist)"):
        loaders[party](root / party)
    path.write_text("{not json")
    with pytest.raises(error, match=victim.replace(".", r"\.")):
        loaders[party](root / party)


def test_real_2048_bit_consortium(tmp_path: Path, contract: DataContract) -> None:
    paths = init_consortium(tmp_path / "c", contract, ["a", "b", "c"])
    agg = load_aggregator_bundle(paths.aggregator)
    bank = load_bank_bundle(paths.banks["b"])
    assert agg.config.key_bits == 2048 == bank.private_key.public.bits
    assert bank.private_key.public == agg.public_key


def test_private_key_header_sniff_never_reaches_the_factors(tmp_path: Path) -> None:
    from fedtab.consortium.bundles import PRIVATE_MARKERS, SNIFF_BYTES

    for bits in (256, 2048):
        key = generate_keypair(bits, allow_small_for_tests=True)
        save_private_key(key, tmp_path / f"k{bits}.json")
        head = (tmp_path / f"k{bits}.json").read_bytes()[:SNIFF_BYTES]
        assert PRIVATE_MARKERS[0] in head
        assert b'"p"' not in head and b'"q"' not in head
        assert format(key.p, "x").encode()[:8] not in head
