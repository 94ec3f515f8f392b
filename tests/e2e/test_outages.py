"""While a service is down, clients are told which one, never where it runs; once it is back,
the same clients work again without reconnecting by hand."""

from __future__ import annotations

import pytest
from conftest import admin

from cloister.errors import UnavailableError
from cloister.testing import RunningPlatform


@pytest.mark.parametrize("service", ["authentication", "access_control", "management"])
def test_an_outage_names_the_service_and_heals(own_platform: RunningPlatform, service: str) -> None:
    root = admin(own_platform)
    assert root.frontend.list_functions(own_platform.admin_user) == {}
    own_platform.platform.stop_service(service)
    with pytest.raises(UnavailableError) as down:
        root.frontend.list_functions(own_platform.admin_user)
    name = service.replace("_", " ")
    assert down.value.message == f"the {name} service is unavailable; try again shortly"
    assert "127.0.0.1" not in down.value.message and "incorrent" not in down.value.message
    own_platform.platform.start_service(service)
    assert root.frontend.list_functions(own_platform.admin_user) == {}
    root.close()
