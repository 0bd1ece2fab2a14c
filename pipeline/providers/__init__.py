"""Where raw data comes from: the CoinGecko API, or the bundled offline sample."""
