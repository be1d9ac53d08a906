"""Entry point: `application` for Gunicorn (run:application), or a dev server.

The order at import matters: the environment (.env) first, then logging, then
error tracking, then the app, so that the Sentry client sees every later failure
and Gunicorn's gevent workers create it after monkey patching.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import signal
import sys

from dotenv import load_dotenv

from app.settings import (
    ConfigError,
    Settings,
    check_database,
    env_file,
    is_loopback,
)

# Gunicorn treats this exit code from a worker as "failed to boot" and stops,
# instead of respawning workers forever.
CONFIG_ERROR_EXIT = 3

log = logging.getLogger("agented")


def load_settings() -> Settings:
    """Read .env (never overriding the real environment), then validate it all."""
    load_dotenv(env_file(), override=False)
    try:
        settings = Settings.from_env()
        check_database(settings.db_path)
        return settings
    except ConfigError as exc:
        print(f"agented: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from None


settings = load_settings()

from app.logs import configure_logging  # noqa: E402 - after .env, before the rest

configure_logging(settings.log_format, settings.log_level)

from app.error_tracking import init_error_tracking  # noqa: E402

init_error_tracking(settings.sentry, api_key=settings.api_key)

from app.factory import begin_shutdown, create_app, shutdown  # noqa: E402

application = create_app()
atexit.register(shutdown, application)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Agented development server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=20000)
    args = parser.parse_args(argv)

    if settings.api_key is None and not is_loopback(args.host):
        print(
            f"agented: configuration error: --host {args.host} is not loopback and "
            "AGENTED_API_KEY is not set",
            file=sys.stderr,
        )
        return CONFIG_ERROR_EXIT
    log.info("dev server starting", extra={"host": args.host, "port": args.port})
    # SIGTERM would end the process on the spot, skipping atexit: agents left
    # running, executions left "running", Sentry's queue lost. Unwind as Ctrl-C does.
    signal.signal(signal.SIGTERM, _stop_dev_server)
    application.run(host=args.host, port=args.port, threaded=True)
    return 0


def _stop_dev_server(signum: int, frame: object) -> None:
    begin_shutdown(application)
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
