-- market_segment_analysis: one row per market_cap_category of the current mart.
-- market_cap_share_pct is the share of the tracked coins' cap (sums to 100);
-- market_dominance_pct is the share of the mart's dominance basis, like the mart's: the whole market
-- (/global) when dominance_basis = 'global', the top-N coins without derivative tokens when 'top_n'.
-- The median is computed with window functions so the same SQL runs on SQLite and PostgreSQL.
with

mart as (
    select * from crypto_analytics_mart
),

tracked as (
    select sum(market_cap) as total_market_cap
    from mart
),

ranked_changes as (
    select
        market_cap_category,
        price_change_percentage_24h,
        row_number() over (
            partition by market_cap_category order by price_change_percentage_24h
        ) as position,
        count(*) over (partition by market_cap_category) as n
    from mart
    where price_change_percentage_24h is not null
),

medians as (
    select
        market_cap_category,
        avg(price_change_percentage_24h) as median_price_change_24h
    from ranked_changes
    where position in ((n + 1) / 2, (n + 2) / 2)
    group by market_cap_category
),

segments as (
    select
        market_cap_category,
        count(*) as coin_count,
        sum(market_cap) as total_market_cap,
        sum(market_dominance_pct) as market_dominance_pct,
        sum(total_volume) as total_volume,
        avg(price_change_percentage_24h) as avg_price_change_24h,
        avg(price_volatility_24h) as avg_volatility_24h,
        avg(volume_to_mcap_ratio) as avg_volume_to_mcap_ratio,
        sum(case when price_change_percentage_24h > 0 then 1 else 0 end) as gainers_count,
        sum(case when price_change_percentage_24h < 0 then 1 else 0 end) as losers_count,
        max(snapshot_at) as snapshot_at,
        max(dominance_basis) as dominance_basis
    from mart
    group by market_cap_category
),

final as (
    select
        s.market_cap_category,
        s.coin_count,
        s.total_market_cap,
        case when t.total_market_cap > 0 then s.total_market_cap * 100.0 / t.total_market_cap end
            as market_cap_share_pct,
        s.market_dominance_pct,
        s.dominance_basis,
        s.total_volume,
        s.avg_price_change_24h,
        m.median_price_change_24h,
        s.avg_volatility_24h,
        s.avg_volume_to_mcap_ratio,
        s.gainers_count,
        s.losers_count,
        s.snapshot_at
    from segments as s
    cross join tracked as t
    left join medians as m on m.market_cap_category = s.market_cap_category
)

select * from final
