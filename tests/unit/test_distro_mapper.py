from __future__ import annotations

import pytest

from distro.mapper import DistroMapper, distro_hash, java_string_hash

# Computed with OpenJDK 17: s.hashCode() and Math.abs(s.hashCode() % Integer.MAX_VALUE).
JAVA_VECTORS = [
    ("hello", 99162322, 99162322),
    ("DEFAULT_GROUP@@demo", -1251993628, 1251993628),
    ("G1@@svc-😀-ü", -490683735, 490683735),
    ("", 0, 0),
    ("DEFAULT_GROUP@@orders-service-0001", -2055425568, 2055425568),
]


@pytest.mark.parametrize(("text", "java_hash", "java_distro"), JAVA_VECTORS)
def test_hashes_match_java(text, java_hash, java_distro):
    assert java_string_hash(text) == java_hash
    assert distro_hash(text) == java_distro


def test_every_member_agrees_on_the_owner_whatever_the_list_order():
    members = ["10.0.0.3:8848", "10.0.0.1:8848", "10.0.0.2:8848"]
    views = [
        DistroMapper.of(m, reversed(members) if i % 2 else members) for i, m in enumerate(members)
    ]
    for n in range(200):
        name = f"DEFAULT_GROUP@@svc-{n}"
        owners = {v.owner(name) for v in views}
        assert len(owners) == 1
        assert [v.responsible(name) for v in views].count(True) == 1
        assert next(v for v in views if v.responsible(name)).local == owners.pop()


def test_ownership_spreads_over_members():
    mapper = DistroMapper.of("10.0.0.1:8848", ["10.0.0.1:8848", "10.0.0.2:8848", "10.0.0.3:8848"])
    owners = [mapper.owner(f"DEFAULT_GROUP@@svc-{n}") for n in range(3000)]
    assert all(owners.count(m) > 800 for m in mapper.healthy)


def test_a_node_outside_the_list_is_responsible_and_an_empty_list_owns_nothing():
    assert DistroMapper.of("10.9.9.9:8848", ["10.0.0.1:8848"]).responsible("DEFAULT_GROUP@@a")
    assert not DistroMapper.of("10.0.0.1:8848", []).responsible("DEFAULT_GROUP@@a")
