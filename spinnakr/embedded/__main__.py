"""``python -m spinnakr.embedded start|stop|status``: the checkout's embedded servers by hand."""

from __future__ import annotations

import sys

from spinnakr import embedded
from spinnakr.embedded import postgres, valkey


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        current = embedded.start()
        print(f"postgres: {'running' if current.postgres else 'not used'} ({postgres.database_url()})")
        print(f"redis: {'running' if current.redis else 'not used'} ({valkey.redis_url()})")
        print(f"broker: {'running' if current.broker else 'not used'} ({valkey.broker_redis_url()})")
    elif command == "stop":
        embedded.stop()
        print("embedded servers stopped")
    elif command == "status":
        current = embedded.status()
        print(f"postgres: {'running' if current.postgres else 'stopped'} ({postgres.database_url()})")
        print(f"redis: {'running' if current.redis else 'stopped'} ({valkey.redis_url()})")
        print(f"broker: {'running' if current.broker else 'stopped'} ({valkey.broker_redis_url()})")
    else:
        print("usage: python -m spinnakr.embedded start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
