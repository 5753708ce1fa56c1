"""The process lifecycle of emitters: fork and exit hooks, and one adapter per server.

* :mod:`.registry` — every live dispatcher of this process; the ``os.register_at_fork`` and
  ``atexit`` hooks; :class:`~.registry.ProcessLock`.
* :mod:`.mp_children` — ``multiprocessing``/``billiard`` children (exit through
  ``os._exit``, finalizers run).
* :mod:`.celery` — Celery's prefork children (``worker_process_shutdown``).
* :mod:`.uwsgi` — uWSGI's post-fork hook and ``atexit``, the threads warning, and no
  sender thread in a master without fork hooks.
* :mod:`.handover` — a master's buffer handed to exactly one child.

:data:`REGISTRY`, :data:`UWSGI` and :data:`HANDOVER` are this process's instances.
"""

from __future__ import annotations

from ..threads import start_background
from .celery import CeleryAdapter
from .handover import Handover
from .mp_children import MultiprocessingAdapter
from .registry import Managed, ProcessLock, ProcessRegistry
from .uwsgi import UwsgiAdapter

UWSGI = UwsgiAdapter()
REGISTRY = ProcessRegistry(adapters=(MultiprocessingAdapter(), CeleryAdapter(), UWSGI))
HANDOVER = Handover()

__all__ = ["HANDOVER", "REGISTRY", "UWSGI", "Managed", "ProcessLock", "ProcessRegistry",
           "start_background"]
