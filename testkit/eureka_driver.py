"""Child process that runs one real ``py-eureka-client`` (0.13.3) instance.

Each client runs in a process of its own: the library keeps module-level state, and its heartbeat
thread registers again after ``stop()`` (``shared/facades.md`` §0.5), so a test ends a client by
killing its process (``EurekaProcess.kill``), which is also how a crashed client looks.

Arguments: ``<server url> <app> <port> <renewal s> <duration s>``. Line protocol on stdin/stdout
(one JSON object a line): it prints ``{"ready": true}`` once registered; then each command
``{"cmd": "discover", "app": "X"}`` answers ``{"ok": true, "result": [[ip, port, status], ...]}``
(the client's own registry: what it fetched through /apps and /apps/delta), and
``{"cmd": "status", "value": "OUT_OF_SERVICE"}`` sends a status update. stdin closing ends it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> None:
    import py_eureka_client.eureka_client as eureka_client

    server, app, port, renewal, duration = sys.argv[1:6]
    client = eureka_client.init(
        eureka_server=server,
        app_name=app,
        instance_ip="127.0.0.1",
        instance_host="127.0.0.1",
        instance_port=int(port),
        renewal_interval_in_secs=int(renewal),
        duration_in_secs=int(duration),
        metadata={"driver": "py-eureka-client"},
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command: dict[str, Any] = json.loads(line)
        try:
            if command["cmd"] == "discover":
                found = client.applications.get_application(command["app"].upper())
                result: Any = [[i.ipAddr, i.port.port, i.status] for i in found.instances]
            elif command["cmd"] == "status":
                eureka_client.get_event_loop().run_until_complete(
                    client.status_update(command["value"])
                )
                result = None
            else:
                raise ValueError(f"unknown command {command['cmd']}")
            answer = {"ok": True, "result": result}
        except Exception as exc:  # reported to the test, which decides
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
