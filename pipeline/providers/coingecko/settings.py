"""CoinGecko API v3 constants: endpoints, page size, request defaults."""

MARKETS_PATH = "/coins/markets"
GLOBAL_PATH = "/global"
MARKET_CHART_PATH = "/coins/{coin_id}/market_chart"
#: Sectors: every category's market cap, volume and 24h change; every category's id and name.
CATEGORIES_PATH = "/coins/categories"
CATEGORIES_LIST_PATH = "/coins/categories/list"

#: The API's largest page for /coins/markets.
MAX_PER_PAGE = 250

#: About how many coins /coins/markets lists in all (CoinGecko: ~17,000 active coins in 2025). Used only
#: to estimate a whole-market sweep ("41 of ~68 pages", the API budget's plan); the sweep itself stops at
#: the first page shorter than MAX_PER_PAGE, however many coins that is.
WHOLE_MARKET_COINS_ESTIMATE = 17_000


def markets_pages(top_n: int | None) -> int:
    """Pages of /coins/markets one snapshot takes (``top_n=None``: the whole market, estimated)."""
    return -(-(WHOLE_MARKET_COINS_ESTIMATE if top_n is None else top_n) // MAX_PER_PAGE)


#: Periods requested for price_change_percentage_<period>_in_currency.
PRICE_CHANGE_PERIODS = "1h,24h,7d,30d"

#: Statuses worth another try: timeouts, rate limits and server trouble.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

#: The longest Retry-After we honour before giving up on the run.
MAX_RETRY_AFTER_SECONDS = 300

#: Same-host redirects followed per request (another host is never followed: the key would go with it).
MAX_REDIRECTS = 5

#: Largest decoded response body accepted (COINGECKO_MAX_RESPONSE_BYTES); a real 250-coin page with
#: sparklines is about 1.5 MB.
DEFAULT_MAX_RESPONSE_BYTES = 20 * 1024 * 1024

#: Bytes asked for per socket read while streaming a body.
READ_CHUNK_BYTES = 64 * 1024

#: The refresh button's budget: a person is waiting (COINGECKO_INTERACTIVE_*).
DEFAULT_INTERACTIVE_DEADLINE_SECONDS = 10.0
DEFAULT_INTERACTIVE_MAX_RETRIES = 1
