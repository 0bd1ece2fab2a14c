-- market_history: one row per published snapshot time in staging_crypto_market (held ones are left out).
-- Totals come from /global when that snapshot has one (dominance_basis = 'global'),
-- otherwise from the tracked coins ('tracked_universe'). Stablecoins are the ids in
-- ref_stablecoins (sql/seeds/ref_stablecoins.csv); "others" is everything else.
-- Incremental: the "since" parameter is the oldest snapshot a run added; older points are kept as they are
-- (a full rebuild passes the earliest possible time).
with

published as (
    select snapshot_at
    from snapshots
    where status = 'published' and snapshot_at >= :since
),

markets as (
    select m.snapshot_at, m.id, m.source, m.market_cap, m.total_volume
    from staging_crypto_market as m
    inner join published as p on p.snapshot_at = m.snapshot_at
),

stablecoins as (
    select id from ref_stablecoins
),

global_market as (
    select snapshot_at, total_market_cap, total_volume
    from staging_global_market
    where total_market_cap > 0 and snapshot_at >= :since
),

per_snapshot as (
    select
        m.snapshot_at,
        max(m.source) as source,
        count(*) as coin_count,
        sum(m.market_cap) as tracked_market_cap,
        sum(m.total_volume) as tracked_volume,
        sum(case when m.id = 'bitcoin' then m.market_cap end) as btc_market_cap,
        sum(case when m.id = 'ethereum' then m.market_cap end) as eth_market_cap,
        sum(case when s.id is not null then m.market_cap else 0 end) as stablecoin_market_cap
    from markets as m
    left join stablecoins as s on s.id = m.id
    group by m.snapshot_at
),

totals as (
    select
        p.*,
        coalesce(g.total_market_cap, p.tracked_market_cap) as total_market_cap,
        coalesce(g.total_volume, p.tracked_volume) as total_volume,
        case when g.total_market_cap is not null then 'global' else 'tracked_universe' end as dominance_basis
    from per_snapshot as p
    left join global_market as g on g.snapshot_at = p.snapshot_at
),

final as (
    select
        snapshot_at,
        source,
        coin_count,
        total_market_cap,
        total_volume,
        btc_market_cap * 100.0 / nullif(total_market_cap, 0) as btc_dominance_pct,
        eth_market_cap * 100.0 / nullif(total_market_cap, 0) as eth_dominance_pct,
        stablecoin_market_cap * 100.0 / nullif(total_market_cap, 0) as stablecoin_dominance_pct,
        100.0 - (coalesce(btc_market_cap, 0) + coalesce(eth_market_cap, 0) + stablecoin_market_cap)
            * 100.0 / nullif(total_market_cap, 0) as others_dominance_pct,
        dominance_basis
    from totals
)

select * from final
