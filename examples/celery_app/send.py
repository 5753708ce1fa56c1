"""Queue example tasks: ``python examples/celery_app/send.py N`` sends N tasks (every 5th
a failing ``shop.charge``, every 5th a ``shop.flaky`` retried once, the others
``shop.add`` sleeping 20 ms) and prints one JSON line per task: its name and id."""

from __future__ import annotations

import json
import sys

from broker import make_celery  # beside this script, which is first on sys.path


def main(count: int) -> None:
    app = make_celery("producer")
    with app.connection_for_write() as conn:
        for n in range(count):
            if n % 5 == 3:
                name, args = "shop.charge", [n]
            elif n % 5 == 4:
                name, args = "shop.flaky", [1]
            else:
                name, args = "shop.add", [n, n, 20]
            result = app.send_task(name, args=args, connection=conn)
            sys.stdout.write(json.dumps({"name": name, "id": result.id}) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
