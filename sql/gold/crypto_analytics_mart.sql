-- crypto_analytics_mart: one row per coin in the newest published snapshot of staging_crypto_market
-- (a snapshot the plausibility gate held back stays in silver and never reaches gold).
-- Dominance is the coin's share of the whole market (/global total market cap of the
-- same snapshot, as CoinGecko shows it); without a /global body for that snapshot it
-- falls back to the tracked universe, and dominance_basis says which was used.
with

latest as (
    select max(snapshot_at) as snapshot_at
    from snapshots
    where status = 'published'
),

markets as (
    select m.*
    from staging_crypto_market as m
    inner join latest as l on m.snapshot_at = l.snapshot_at
),

global_market as (
    select g.total_market_cap
    from staging_global_market as g
    inner join latest as l on g.snapshot_at = l.snapshot_at
    where g.total_market_cap > 0
),

tracked as (
    select sum(market_cap) as total_market_cap
    from markets
),

sparklines as (
    select id, snapshot_at, sparkline_7d
    from staging_sparkline
),

final as (
    select
        m.id,
        m.symbol,
        m.name,
        m.image,
        m.market_cap_rank,
        m.current_price,
        m.market_cap,
        m.total_volume,
        case
            when g.total_market_cap is not null then m.market_cap * 100.0 / g.total_market_cap
            when t.total_market_cap > 0 then m.market_cap * 100.0 / t.total_market_cap
        end as market_dominance_pct,
        case when g.total_market_cap is not null then 'global' else 'tracked_universe' end as dominance_basis,
        m.market_cap_category,
        m.liquidity_category,
        m.price_trend_category,
        m.price_change_percentage_1h,
        m.price_change_percentage_24h,
        m.price_change_percentage_7d,
        m.price_change_percentage_30d,
        m.market_cap_change_percentage_24h,
        m.price_volatility_24h,
        m.volume_to_mcap_ratio,
        m.distance_from_ath_pct,
        m.high_24h,
        m.low_24h,
        m.ath,
        m.circulating_supply,
        s.sparkline_7d,
        m.last_updated,
        m.stale_record,
        m.snapshot_at,
        m.source,
        m.run_id
    from markets as m
    cross join tracked as t
    left join global_market as g on 1 = 1
    left join sparklines as s on s.id = m.id and s.snapshot_at = m.snapshot_at
)

select * from final
