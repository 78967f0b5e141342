"""Concurrent writers through the real SDK: nothing is lost to a race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from testkit.harness import NodeProcess


def test_500_concurrent_registrations_from_20_threads_are_all_listed(node: NodeProcess):
    client = node.client()
    services = [f"conc-{i}" for i in range(5)]  # several services, so writers share keys

    def register(n: int) -> bool:
        return bool(
            client.add_naming_instance(
                services[n % 5], f"10.50.{n // 250}.{n % 250}", 8000 + n, cluster_name="DEFAULT"
            )
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(register, range(500)))

    assert all(results)
    listed = set()
    for service in services:
        for host in client.list_naming_instance(service)["hosts"]:
            listed.add((host["ip"], host["port"]))
    expected = {(f"10.50.{n // 250}.{n % 250}", 8000 + n) for n in range(500)}
    assert listed == expected


def test_concurrent_persistent_registrations_to_one_service_are_all_kept(node: NodeProcess):
    client = node.client()

    def register(n: int) -> bool:
        return bool(
            client.add_naming_instance(
                "conc-persistent", "127.0.0.2", 10000 + n, cluster_name="DEFAULT", ephemeral=False
            )
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert all(pool.map(register, range(100)))
    ports = {h["port"] for h in client.list_naming_instance("conc-persistent")["hosts"]}
    assert ports == {10000 + n for n in range(100)}
