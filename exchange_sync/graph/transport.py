"""The one HTTP session that carries sign-in and Graph traffic.

With an emulator URL the session quietly sends Microsoft's hosts to the emulator, so the rest of
the code (and MSAL) keeps using Microsoft's real URLs, including the ``@odata.nextLink`` and
``@odata.deltaLink`` values Graph hands back, and nothing else has to know it is not Microsoft.
"""

from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.util.retry import Retry

LOGIN_HOST_URL = "https://login.microsoftonline.com/"
GRAPH_HOST_URL = "https://graph.microsoft.com/"

# Graph allows 4 requests in flight per mailbox; a process may sync a few mailboxes at once.
# Beyond this, requests opens extra connections and discards them rather than blocking.
POOL_SIZE = 16

# Retry only failures where the request cannot have had an effect: connection refused/reset before
# sending, or a dropped keep-alive connection on an idempotent method (Microsoft's front doors
# close idle connections). HTTP statuses (429/503/...) are GraphClient's business, not ours.
TRANSPORT_RETRY = Retry(
    total=2, connect=2, read=2, status=0, other=0, backoff_factor=0.2, raise_on_status=False
)

# (connect, read) seconds. requests has no session-wide timeout and MSAL sends none when given
# our session, so without this a stalled connection would hang a sync run for ever.
# A $batch of 20 writes can take a while to answer, hence the generous read timeout.
DEFAULT_TIMEOUT_S = (10, 120)


class PooledAdapter(HTTPAdapter):
    """An adapter with a pool sized for our concurrency and a default timeout."""

    def __init__(self) -> None:
        super().__init__(pool_maxsize=POOL_SIZE, max_retries=TRANSPORT_RETRY)

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = DEFAULT_TIMEOUT_S
        return super().send(request, **kwargs)


class RewritingAdapter(PooledAdapter):
    """Sends every request it is mounted for to ``target_url``'s scheme, host and port,
    keeping the path and query as they were."""

    def __init__(self, target_url: str) -> None:
        super().__init__()
        target = urlsplit(target_url)
        if not (target.scheme and target.netloc):
            raise ValueError(f"The emulator URL must look like http://host:port, not {target_url!r}")
        self.target_scheme = target.scheme
        self.target_netloc = target.netloc

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:  # type: ignore[override]
        original = urlsplit(request.url)
        request.url = urlunsplit(
            (self.target_scheme, self.target_netloc, original.path, original.query, original.fragment)
        )
        # requests chose proxies for Microsoft's host; the emulator's host may need different ones.
        kwargs["proxies"] = get_environ_proxies(request.url)
        return super().send(request, **kwargs)


def build_session(*, emulator_url: str | None) -> requests.Session:
    """One pooled session for MSAL and Graph. With ``emulator_url``, Microsoft's login and Graph
    hosts are served by the emulator at that address."""
    session = requests.Session()
    session.mount("https://", PooledAdapter())
    if emulator_url:
        rewriting = RewritingAdapter(emulator_url)
        session.mount(LOGIN_HOST_URL, rewriting)
        session.mount(GRAPH_HOST_URL, rewriting)
    return session
