"""What the selected tests of a module need, for fixtures that prepare it at once."""

from __future__ import annotations

import pytest


def selected_users(request: pytest.FixtureRequest, fixture: str) -> list[pytest.Item]:
    """The selected tests of the requesting module that use `fixture`.

    A module-scoped fixture that runs several slow things together asks this, so
    that `-k` picking one test does not pay for the others.
    """
    return [
        item
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and fixture in getattr(item, "fixturenames", ())
    ]


def selected_params(request: pytest.FixtureRequest, fixture: str) -> set[object]:
    """The parameters of `fixture` that the selected tests of the module use."""
    return {
        item.callspec.params[fixture]
        for item in selected_users(request, fixture)
        if isinstance(item, pytest.Function) and fixture in item.callspec.params
    }
