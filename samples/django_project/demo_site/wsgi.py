"""WSGI entry point.

Nothing here (or in any AppConfig.ready()) starts a realtime_sync client: under gunicorn
``--preload`` this module is imported in the master, which then forks the workers, and a client
started here would be dead in every worker (using it raises ClientForkedError).  The events are
received by ``manage.py realtime_listen``, a process of its own.  A view that must send something
live uses ``realtime_sync.contrib.django.get_client()``, which starts one client per worker.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

application = get_wsgi_application()
