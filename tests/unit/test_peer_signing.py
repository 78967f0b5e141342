from __future__ import annotations

import pytest

from distro.signing import RECEIVER, SIGNATURE, TIMESTAMP, Unsigned, Verifier, sign
from lib.errors import Forbidden
from lib.keys import peer_key as derive_key

KEY = derive_key("cluster-secret")
ME = "10.0.0.2:8848"
PATH = "/nacos/v1/ns/distro/datum?x=1"
BODY = b'{"k":"v"}'


def signed(now: float = 1000.0) -> dict[str, str]:
    return sign(KEY, "PUT", PATH, BODY, "10.0.0.1:8848", ME, now=now)


def test_a_signed_request_is_accepted_once_and_names_its_sender():
    verifier = Verifier(KEY, ME)
    headers = signed()
    assert verifier.verify("PUT", PATH, BODY, headers, now=1001.0) == "10.0.0.1:8848"
    with pytest.raises(Forbidden, match="replayed"):
        verifier.verify("PUT", PATH, BODY, headers, now=1002.0)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", PATH, BODY),
        ("PUT", PATH + "&y=2", BODY),
        ("PUT", PATH, b'{"k":"w"}'),
    ],
)
def test_any_change_to_method_path_or_body_breaks_the_signature(method, path, body):
    with pytest.raises(Forbidden, match="does not match"):
        Verifier(KEY, ME).verify(method, path, body, signed(), now=1000.0)


def test_another_secret_or_an_old_timestamp_is_refused():
    with pytest.raises(Forbidden):
        Verifier(derive_key("other"), ME).verify("PUT", PATH, BODY, signed(), now=1000.0)
    with pytest.raises(Forbidden, match="window"):
        Verifier(KEY, ME).verify("PUT", PATH, BODY, signed(now=1000.0), now=1100.0)
    tampered = {**signed(), TIMESTAMP: "1001"}
    with pytest.raises(Forbidden):
        Verifier(KEY, ME).verify("PUT", PATH, BODY, tampered, now=1000.0)


def test_unsigned_requests_are_401_whatever_the_user_agent():
    with pytest.raises(Unsigned) as info:
        Verifier(KEY, ME).verify(
            "PUT", PATH, BODY, {"User-Agent": "Nacos-Server:1.4.6"}, now=1000.0
        )
    assert info.value.status == 401
    partial = {k: v for k, v in signed().items() if k != SIGNATURE}
    with pytest.raises(Unsigned):
        Verifier(KEY, ME).verify("PUT", PATH, BODY, partial, now=1000.0)


def test_a_request_signed_for_another_member_is_refused_there():
    headers = signed()
    with pytest.raises(Forbidden, match=r"addressed to 10\.0\.0\.2:8848"):
        Verifier(KEY, "10.0.0.3:8848").verify("PUT", PATH, BODY, headers, now=1000.0)
    # Rewriting the receiver header breaks the signature.
    with pytest.raises(Forbidden, match="does not match"):
        Verifier(KEY, "10.0.0.3:8848").verify(
            "PUT", PATH, BODY, {**headers, RECEIVER: "10.0.0.3:8848"}, now=1000.0
        )
    assert Verifier(KEY, ME).verify("PUT", PATH, BODY, headers, now=1000.0) == "10.0.0.1:8848"
