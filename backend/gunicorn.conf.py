"""Gunicorn settings for Agented: `gunicorn -c backend/gunicorn.conf.py`.

The master reads this file before forking and checks the whole environment here,
so a bad value stops the server with one line instead of a loop of dying workers.
"""

import os
import signal
import sys
from pathlib import Path

BACKEND = Path(__file__).resolve().parent
sys.path.insert(0, str(BACKEND))

from dotenv import load_dotenv  # noqa: E402

from app.settings import (  # noqa: E402 - stdlib only, safe before the fork
    ConfigError,
    Settings,
    check_database,
    env_file,
)

load_dotenv(env_file(), override=False)
try:
    _settings = Settings.from_env()
    check_database(_settings.db_path)
except ConfigError as exc:
    print(f"agented: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None

chdir = str(BACKEND)
wsgi_app = "run:application"
bind = [_settings.bind]

# gevent: one greenlet per connection, so long-lived SSE streams cost no thread each
worker_class = "gevent"
worker_connections = 1000
# one worker: SSE subscribers and running executions live in this process's memory
workers = 1
# each worker imports run.py itself, after gevent's monkey patching
preload_app = False

# a worker silent this long is killed; gevent's hub keeps it beating while streams wait
timeout = 60
# SIGTERM: streams get this long to end, Sentry's queue its shutdown_timeout (5 s)
graceful_timeout = 15
# short: an idle keep-alive connection holds a stopping worker this long
keepalive = 2

# access log off: every request is already one structured line from the app if needed
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Gunicorn 27 opens a control socket under ~/.gunicorn/ by default; servers run side
# by side (tests, several checkouts) would fight over it
control_socket_disable = True


def post_worker_init(worker):
    """On SIGTERM, end the open event streams too, so the worker can exit at once.

    On SIGTERM the gevent worker stops accepting, then waits for every open response
    up to graceful_timeout and is killed past it, before atexit (agents killed,
    executions marked interrupted, Sentry flushed) runs. SSE responses never end by
    themselves, so the app is asked to end them; Gunicorn's own handler still runs.
    """
    from gunicorn.workers.ggevent import GeventWorker

    if not isinstance(worker, GeventWorker):
        return  # another worker class given on the command line: nothing to wrap

    # the worker's imports: after gevent's monkey patching, and run.py is loaded
    import gevent

    from app.factory import begin_shutdown
    from run import application

    stop_worker = worker.handle_exit

    def stop_worker_and_streams(sig, frame):
        stop_worker(sig, frame)
        # the handler may have interrupted a greenlet holding the broker's lock
        gevent.spawn(begin_shutdown, application)

    signal.signal(signal.SIGTERM, stop_worker_and_streams)
    # signal.signal() makes SIGTERM interrupt system calls again; Gunicorn had
    # turned that off so that a stop does not break requests in progress
    signal.siginterrupt(signal.SIGTERM, False)
