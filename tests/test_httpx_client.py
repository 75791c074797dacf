"""Specification of resilient.httpx.client() and async_client(): every route of the
client they build goes through the guards of one ResilientTransport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from resilient import ConfigurationError, Registry
from resilient.httpx import EXTENSION, Outcome, ResilientTransport, async_client, client
from resilient.testing import VirtualClock

URL = "https://feed.example/odds"


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text=request.url.host)


def fresh(registry: Registry, clock: VirtualClock, **kwargs: object) -> ResilientTransport:
    return ResilientTransport(registry=registry, clock=clock, **kwargs)  # type: ignore[arg-type]


def route(http: httpx.Client | httpx.AsyncClient, url: str) -> object:
    # httpx's own routing (private): the transport a request to `url` would go through.
    return http._transport_for_url(httpx.URL(url))


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests start from an environment without proxies, whatever the machine has."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_the_default_route_goes_through_the_guards(registry: Registry, clock: VirtualClock) -> None:
    """client() builds an httpx.Client whose default route is a sibling of the transport,
    sharing its guards, over an httpx.HTTPTransport."""
    rt = fresh(registry, clock)
    with client(rt) as http:
        default = route(http, URL)
        assert isinstance(default, ResilientTransport)
        assert default._core is rt._core
        assert isinstance(default.transport, httpx.HTTPTransport)


def test_client_without_a_transport_builds_a_default_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """client() alone builds a ResilientTransport named 'http' in the default registry."""
    import resilient

    registry = Registry()
    monkeypatch.setattr(resilient._core._registry, "default_registry", registry)
    monkeypatch.setattr(resilient._core._guard, "default_registry", registry)
    with client() as http:
        default = route(http, URL)
    assert isinstance(default, ResilientTransport)
    assert default.name == "http"
    assert default.registry is registry


def test_an_explicit_proxy_is_mounted_through_the_guards(
    registry: Registry, clock: VirtualClock
) -> None:
    """client(proxy=...) routes every URL through a sibling over a proxied HTTPTransport."""
    rt = fresh(registry, clock)
    with client(rt, proxy="http://proxy.local:3128") as http:
        proxied = route(http, URL)
        assert isinstance(proxied, ResilientTransport)
        assert proxied._core is rt._core
        assert isinstance(proxied.transport, httpx.HTTPTransport)
        assert proxied is not http._transport  # the default route is another sibling
        # httpx's proxied transport pools through the proxy (httpcore.HTTPProxy).
        assert type(proxied.transport._pool).__name__ == "HTTPProxy"


def test_environment_proxies_are_mounted_through_the_guards(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With trust_env (the default), HTTPS_PROXY from the environment is honoured, and its
    route goes through the guards."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    rt = fresh(registry, clock)
    with client(rt) as http:
        proxied = route(http, URL)
        plain = route(http, "http://feed.example/")
    assert isinstance(proxied, ResilientTransport)
    assert proxied._core is rt._core
    assert isinstance(plain, ResilientTransport)
    assert proxied is not plain


def test_trust_env_false_ignores_environment_proxies(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With trust_env=False, every URL takes the default route."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    with client(fresh(registry, clock), trust_env=False) as http:
        assert route(http, URL) is route(http, "http://feed.example/")


def test_mounts_are_wrapped_and_their_requests_guarded(
    registry: Registry, clock: VirtualClock
) -> None:
    """A mounted transport is wrapped: a request through it gets an Outcome and counts
    in its host's breaker."""
    rt = fresh(registry, clock)
    with client(rt, mounts={"https://internal.example": httpx.MockTransport(ok)}) as http:
        response = http.get("https://internal.example/status")
    assert response.text == "internal.example"
    assert isinstance(response.extensions[EXTENSION], Outcome)
    breaker = registry.get("http.breaker.internal.example:443")
    assert breaker.snapshot().statistics["successes"] == 1


def test_a_mount_of_none_stays_unrouted(registry: Registry, clock: VirtualClock) -> None:
    """A mount mapped to None (httpx's "no proxy here") stays None."""
    with client(fresh(registry, clock), mounts={"all://*.local": None}) as http:
        assert route(http, "https://x.local/") is route(http, URL)


def test_a_transport_with_an_inner_transport_is_used_as_it_is(
    registry: Registry, clock: VirtualClock
) -> None:
    """client(ResilientTransport(inner)) sends through that very transport."""
    rt = ResilientTransport(httpx.MockTransport(ok), registry=registry, clock=clock)
    with client(rt) as http:
        assert route(http, URL) is rt
        assert http.get(URL).text == "feed.example"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param("proxy", "http://proxy.local:3128", id="proxy"),
        pytest.param("verify", False, id="verify"),
        pytest.param("http2", True, id="http2"),
        pytest.param("mounts", {}, id="mounts"),
        pytest.param("trust_env", True, id="trust_env"),
    ],
)
def test_a_transport_with_an_inner_one_refuses_options_that_shape_transports(
    registry: Registry, clock: VirtualClock, option: str, value: object
) -> None:
    """An option that would shape an inner transport cannot apply to one already built:
    the error names the option and its value."""
    rt = ResilientTransport(httpx.MockTransport(ok), registry=registry, clock=clock)
    with pytest.raises(ConfigurationError, match=f"{option}={value!r}"):
        client(rt, **{option: value})


def test_transport_keyword_is_refused(registry: Registry, clock: VirtualClock) -> None:
    """transport= would bypass the guards: the helper says where the inner one goes."""
    with pytest.raises(ConfigurationError, match=r"ResilientTransport\(inner\)"):
        client(fresh(registry, clock), transport=httpx.MockTransport(ok))


def test_something_else_than_a_resilient_transport_is_refused() -> None:
    """client(httpx.HTTPTransport()) is a mistake the helper names."""
    with pytest.raises(ConfigurationError, match="transport must be a ResilientTransport"):
        client(httpx.HTTPTransport())  # type: ignore[arg-type]


def test_with_failover_the_base_url_defaults_to_the_first_base(
    registry: Registry, clock: VirtualClock
) -> None:
    """With failover and no base_url, relative URLs go to the first failover base URL."""
    rt = fresh(registry, clock, failover=["https://a.example/api", "https://b.example/api"])
    with client(rt) as http:
        assert http.base_url == httpx.URL("https://a.example/api/")
    with client(rt, base_url="https://c.example") as http:
        assert http.base_url == httpx.URL("https://c.example")


def test_other_keyword_arguments_go_to_httpx(registry: Registry, clock: VirtualClock) -> None:
    """headers=, timeout= and the like reach the httpx client unchanged."""
    with client(fresh(registry, clock), headers={"X-Team": "odds"}, timeout=3) as http:
        assert http.headers["X-Team"] == "odds"
        assert http.timeout == httpx.Timeout(3)


@pytest.mark.anyio
async def test_async_client_routes_mounts_through_the_guards(
    registry: Registry, clock: VirtualClock
) -> None:
    """async_client() wraps every route too; its default route is an AsyncHTTPTransport."""
    rt = fresh(registry, clock)
    async with async_client(
        rt, mounts={"https://internal.example": httpx.MockTransport(ok)}
    ) as http:
        default = route(http, URL)
        assert isinstance(default, ResilientTransport)
        assert isinstance(default.transport, httpx.AsyncHTTPTransport)
        response = await http.get("https://internal.example/")
    assert isinstance(response.extensions[EXTENSION], Outcome)


@pytest.mark.anyio
async def test_async_client_with_a_proxy_routes_through_the_guards(
    registry: Registry, clock: VirtualClock
) -> None:
    """async_client(proxy=...) mounts a sibling over a proxied AsyncHTTPTransport."""
    rt = fresh(registry, clock)
    async with async_client(rt, proxy="http://proxy.local:3128") as http:
        proxied = route(http, URL)
    assert isinstance(proxied, ResilientTransport)
    assert isinstance(proxied.transport, httpx.AsyncHTTPTransport)
    assert proxied._core is rt._core


def test_a_resilient_transport_as_a_mount_is_refused(
    registry: Registry, clock: VirtualClock
) -> None:
    """F10: a ResilientTransport mount would put two sets of guards on its route."""
    inner = ResilientTransport(httpx.MockTransport(ok), name="inner", registry=registry)
    with pytest.raises(ConfigurationError, match=r"mounts\['https://special.example'\]"):
        client(fresh(registry, clock), mounts={"https://special.example": inner}, trust_env=False)


def test_the_base_url_is_the_first_base_in_normal_form(
    registry: Registry, clock: VirtualClock
) -> None:
    """F1: failover=['HTTPS://A.example:443/api/', ...]: base_url https://a.example/api/."""
    rt = fresh(registry, clock, failover=["HTTPS://A.example:443/api/", "https://b.example"])
    with client(rt) as http:
        assert str(http.base_url) == "https://a.example/api/"


def test_httpx_still_reads_proxies_from_the_environment_where_the_helper_looks(
    monkeypatch: pytest.MonkeyPatch, no_proxy_environment: None
) -> None:
    """Pin: the helper uses httpx's private get_environment_proxies (httpx <1)."""
    from httpx._utils import get_environment_proxies

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    found = get_environment_proxies()
    assert found["https://"] == "http://proxy.example:3128"
    assert found["all://*internal.example"] is None


@pytest.mark.parametrize(
    "build", [pytest.param(client, id="client"), pytest.param(async_client, id="async_client")]
)
@pytest.mark.parametrize(
    "inner", [pytest.param(False, id="default-inner"), pytest.param(True, id="own-inner")]
)
def test_proxies_is_refused_with_the_spellings_that_stay_guarded(
    registry: Registry, clock: VirtualClock, build: Any, inner: bool
) -> None:
    """proxies= (httpx 0.27, which would mount unguarded proxy transports) is refused,
    and the error says to pass proxy= or mounts=."""
    rt = (
        ResilientTransport(httpx.MockTransport(ok), registry=registry, clock=clock)
        if inner
        else fresh(registry, clock)
    )
    with pytest.raises(ConfigurationError, match=r"proxies=.*pass proxy=.*or mounts="):
        build(rt, proxies="http://proxy.local:3128")


@pytest.mark.parametrize(
    "build", [pytest.param(client, id="client"), pytest.param(async_client, id="async_client")]
)
@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_transport_with_an_inner_one_refuses_proxies_from_the_environment(
    registry: Registry,
    clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
    build: Any,
    variable: str,
) -> None:
    """With trust_env left to its default, an inner transport would go around the
    environment's proxy: the error names the variable and both ways out."""
    monkeypatch.setenv(variable, "http://proxy.local:3128")
    rt = ResilientTransport(httpx.MockTransport(ok), registry=registry, clock=clock)
    with pytest.raises(ConfigurationError) as caught:
        build(rt)
    message = str(caught.value)
    assert variable in message
    assert "without an inner transport" in message
    assert "trust_env=False" in message


def test_a_transport_with_an_inner_one_accepts_trust_env_false_under_a_proxy_environment(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trust_env=False says to go direct: the inner transport is used as it is, and httpx
    reads nothing from the environment."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    rt = ResilientTransport(httpx.MockTransport(ok), registry=registry, clock=clock)
    with client(rt, trust_env=False) as http:
        assert route(http, URL) is rt
        assert http.trust_env is False
        assert http.get(URL).text == "feed.example"


def test_a_transport_with_an_inner_one_accepts_an_environment_that_only_exempts_hosts(
    registry: Registry, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY alone names no proxy, so nothing is gone around."""
    monkeypatch.setenv("NO_PROXY", "internal.example")
    rt = ResilientTransport(httpx.MockTransport(ok), registry=registry, clock=clock)
    with client(rt) as http:
        assert route(http, URL) is rt
