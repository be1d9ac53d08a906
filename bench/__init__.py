"""The benchmark behind `make bench`: what error tracking costs this service."""
