"""CoinGecko API v3 constants: endpoints, page size, request defaults."""

MARKETS_PATH = "/coins/markets"
GLOBAL_PATH = "/global"
MARKET_CHART_PATH = "/coins/{coin_id}/market_chart"

#: The API's largest page for /coins/markets.
MAX_PER_PAGE = 250

#: Periods requested for price_change_percentage_<period>_in_currency.
PRICE_CHANGE_PERIODS = "1h,24h,7d,30d"

#: Statuses worth another try: timeouts, rate limits and server trouble.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

#: The longest Retry-After we honour before giving up on the run.
MAX_RETRY_AFTER_SECONDS = 300
