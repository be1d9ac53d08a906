"""Agented backend: runs agent command lines as executions and streams their output."""
