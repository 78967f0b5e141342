"""The node's settings object (server/config.py) and the per-node keys (lib/keys.py)."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lib.keys import node_keys, peer_key, raft_password, token_key
from server.config import NamingSettings, SettingError, django_flag, from_environ, known_variables

ROOT = Path(__file__).resolve().parents[2]


def test_an_empty_environment_gives_the_documented_defaults():
    config = from_environ({})
    assert config == NamingSettings()
    assert config.auth_enabled and config.raft_fsync and config.sweep_enabled
    assert config.sweep_interval_s == 0.25 and config.token_ttl_s == 18000
    assert config.check_networks == ("0.0.0.0/0", "::/0")
    assert config.data_dir == Path("data").resolve()
    assert config.database_path == config.data_dir / "naming.sqlite3"
    assert config.log_level == "INFO"


def test_every_field_names_its_own_variable_and_every_variable_is_read():
    variables = known_variables()
    assert len(variables) == len(dataclasses.fields(NamingSettings))
    assert all(name.startswith("NAMING_") for name in variables)


def test_values_are_parsed_into_typed_fields():
    config = from_environ(
        {
            "NAMING_AUTH_ENABLED": "off",
            "NAMING_TOKEN_TTL_S": "600",
            "NAMING_SWEEP_INTERVAL_S": "0.5",
            "NAMING_HEALTH_CHECK_NETWORKS": " 10.0.0.0/8, ,fd00::/8 ",
            "NAMING_DB_PATH": "/tmp/elsewhere.sqlite3",
            "NAMING_LOG_LEVEL": "warning",
            "NAMING_DISTRO_BATCH_WINDOW_MS": "",  # empty: the default, as if unset
        }
    )
    assert config.auth_enabled is False
    assert config.token_ttl_s == 600
    assert config.sweep_interval_s == 0.5
    assert config.check_networks == ("10.0.0.0/8", "fd00::/8")
    assert config.database_path == Path("/tmp/elsewhere.sqlite3")
    assert config.log_level == "WARNING"
    assert config.distro_batch_window_ms == 5.0


def test_an_unknown_naming_variable_is_an_error_that_names_the_closest_known_one():
    with pytest.raises(SettingError) as info:
        from_environ({"NAMING_SWEEP_INTERVAL": "3", "NAMING_ZZZ": "1", "HOME": "/root"})
    assert info.value.problems == [
        "unknown setting NAMING_SWEEP_INTERVAL (did you mean NAMING_SWEEP_INTERVAL_S?)",
        "unknown setting NAMING_ZZZ",
    ]


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("NAMING_AUTH_ENABLED", "maybe", "NAMING_AUTH_ENABLED must be a boolean"),
        ("NAMING_TOKEN_TTL_S", "1.5", "NAMING_TOKEN_TTL_S must be an integer"),
        ("NAMING_SWEEP_INTERVAL_S", "soon", "NAMING_SWEEP_INTERVAL_S must be a number"),
        ("NAMING_SWEEP_INTERVAL_S", "nan", "NAMING_SWEEP_INTERVAL_S must be a finite number"),
        ("NAMING_TOKEN_TTL_S", "59", "NAMING_TOKEN_TTL_S must be >= 60, got 59"),
        ("NAMING_LOGIN_HASH_WORKERS", "0", "NAMING_LOGIN_HASH_WORKERS must be >= 1, got 0"),
        ("NAMING_LOGIN_HASH_WORKERS", "17", "NAMING_LOGIN_HASH_WORKERS must be <= 16, got 17"),
        ("NAMING_SWITCH_INTERVAL_MS", "0", "NAMING_SWITCH_INTERVAL_MS must be >= 0.1"),
        ("NAMING_HEALTH_CHECK_NETWORKS", "10.0.0.0/8,lan", "'lan' is not a CIDR network"),
        ("NAMING_LOG_LEVEL", "chatty", "NAMING_LOG_LEVEL must be one of DEBUG"),
        ("NAMING_REDIS_URL", "localhost:6379", "NAMING_REDIS_URL must be a redis://"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(name: str, raw: str, message: str):
    with pytest.raises(SettingError, match=re.escape(message)):
        from_environ({name: raw})


def test_every_parse_problem_is_reported_at_once():
    with pytest.raises(SettingError) as info:
        from_environ({"NAMING_TOKEN_TTL_S": "x", "NAMING_RAFT_FSYNC": "2", "NAMING_TYPO": "1"})
    assert len(info.value.problems) == 3


def test_the_sweep_must_run_more_often_than_the_default_heartbeat_timeout():
    with pytest.raises(SettingError, match=r"NAMING_SWEEP_INTERVAL_S \(15\) must be below"):
        from_environ({"NAMING_SWEEP_INTERVAL_S": "15"})
    # Switching expiry off (benchmarks) lifts the rule: the interval is not used then.
    assert not from_environ(
        {"NAMING_SWEEP_ENABLED": "false", "NAMING_SWEEP_INTERVAL_S": "3600"}
    ).sweep_enabled


def test_the_distro_batch_window_must_be_shorter_than_the_verify_interval():
    with pytest.raises(SettingError, match=r"NAMING_DISTRO_BATCH_WINDOW_MS .* must be below"):
        from_environ(
            {"NAMING_DISTRO_BATCH_WINDOW_MS": "1000", "NAMING_DISTRO_VERIFY_INTERVAL_S": "1"}
        )
    assert from_environ(
        {"NAMING_DISTRO_BATCH_WINDOW_MS": "1500", "NAMING_DISTRO_VERIFY_INTERVAL_S": "3600"}
    )


def test_other_cross_field_rules():
    with pytest.raises(SettingError, match="NAMING_LOGIN_MAX_ADDRESS_FAILURES"):
        from_environ({"NAMING_LOGIN_MAX_FAILURES": "10", "NAMING_LOGIN_MAX_ADDRESS_FAILURES": "5"})
    with pytest.raises(SettingError, match="cannot both be on"):
        from_environ({"NAMING_FAULT_DROP_SYNC": "true", "NAMING_DISTRO_SYNC_ACK": "true"})


def test_a_settings_object_built_in_code_is_held_to_the_same_rules():
    with pytest.raises(SettingError, match="NAMING_SERVER_THREADS must be >= 1"):
        NamingSettings(server_threads=0)
    field_name = "sweep_interval_s"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(NamingSettings(), field_name, 1.0)  # built once, never changed afterwards


def test_secrets_stay_out_of_the_settings_repr():
    shown = repr(NamingSettings(cluster_secret="s3cr3t-value", admin_password="p4ss-value"))
    assert "s3cr3t-value" not in shown and "p4ss-value" not in shown


def test_django_flags_are_strict_too():
    assert django_flag("DJANGO_DEBUG", {}) is False
    assert django_flag("DJANGO_DEBUG", {"DJANGO_DEBUG": "yes"}) is True
    with pytest.raises(SettingError, match="DJANGO_DEBUG must be a boolean"):
        django_flag("DJANGO_DEBUG", {"DJANGO_DEBUG": "sometimes"})


# -- keys: one place decides derived or generated ------------------------------------------------


def test_a_cluster_member_derives_every_key_from_the_secret(tmp_path: Path):
    keys = node_keys("the-secret", tmp_path, clustered=True)
    assert keys.raft_password == raft_password("the-secret")
    assert keys.token_key == token_key("the-secret")
    assert keys.peer_key == peer_key("the-secret")
    assert len({keys.raft_password.encode(), keys.token_key, keys.peer_key}) == 3
    assert list(tmp_path.iterdir()) == []  # nothing written: every member derives the same
    assert "the-secret" not in repr(keys) and keys.token_key.hex() not in repr(keys)
    with pytest.raises(ValueError, match="cluster secret"):
        node_keys("", tmp_path, clustered=True)


def test_a_standalone_node_generates_its_keys_once_in_private_files(tmp_path: Path):
    first = node_keys("", tmp_path / "data", clustered=False)
    again = node_keys("", tmp_path / "data", clustered=False)
    assert first == again and first.peer_key is None
    for name in ("raft.secret", "token.key"):
        assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


# -- runnode refuses to start on a bad environment -----------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NAMING_SWEEP_INTERVAL": "1"}, "did you mean NAMING_SWEEP_INTERVAL_S?"),
        ({"NAMING_SWEEP_INTERVAL_S": "60"}, "must be below the default heartbeat timeout"),
        ({"NAMING_SERVER_THREADS": "many"}, "NAMING_SERVER_THREADS must be an integer"),
    ],
)
def test_runnode_fails_fast_with_the_message_and_a_non_zero_exit(
    tmp_path: Path, env: dict[str, str], message: str
):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NAMING_")}
    done = subprocess.run(
        [sys.executable, "manage.py", "runnode", "--port", "1", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "configuration error: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # stopped before creating anything
