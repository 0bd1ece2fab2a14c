-- market_history: one row per published snapshot time in staging_crypto_market (held ones are left out).
-- Totals come from /global when that snapshot has a usable one (dominance_basis = 'global': updated
-- within PIPELINE_GLOBAL_MAX_AGE_MINUTES of the coins); BTC and ETH dominance are then CoinGecko's own
-- market_cap_percentage. Otherwise ('top_n', basis_note says why) they come from the tracked coins,
-- leaving out derivative tokens (wrapped, liquid staking, bridged in ref_coin_classes) so nothing is
-- counted twice. Stablecoins are ref_coin_classes' 'stablecoin' ids and the seed ref_stablecoins
-- (sql/seeds/ref_stablecoins.csv); "others" is everything else.
-- Incremental: the "since" parameter is the oldest snapshot a run added; older points are kept as they are
-- (a full rebuild passes the earliest possible time).
with

published as (
    select snapshot_at
    from snapshots
    where status = 'published' and snapshot_at >= :since
),

markets as (
    select m.snapshot_at, m.id, m.source, m.market_cap, m.total_volume, m.market_cap_change_24h
    from staging_crypto_market as m
    inner join published as p on p.snapshot_at = m.snapshot_at
),

stablecoins as (
    select id from ref_stablecoins
    union
    select id from ref_coin_classes where coin_class = 'stablecoin'
),

derivatives as (
    select distinct id from ref_coin_classes where coin_class in ('wrapped', 'liquid_staking', 'bridged')
),

global_row as (
    select snapshot_at, total_market_cap, total_volume, market_cap_change_percentage_24h,
           btc_dominance_pct, eth_dominance_pct, usable, unusable_reason
    from staging_global_market
    where snapshot_at >= :since
),

global_market as (
    select *
    from global_row
    where total_market_cap > 0 and (usable is null or usable)  -- NULL: loaded before the age check existed
),

per_snapshot as (
    select
        m.snapshot_at,
        max(m.source) as source,
        count(*) as coin_count,
        sum(case when d.id is null then m.market_cap end) as tracked_market_cap,
        sum(case when d.id is null then m.total_volume end) as tracked_volume,
        sum(case when d.id is null and m.market_cap is not null and m.market_cap_change_24h is not null
                 then m.market_cap_change_24h end) as tracked_change,
        sum(case when d.id is null and m.market_cap is not null and m.market_cap_change_24h is not null
                 then m.market_cap - m.market_cap_change_24h end) as tracked_before,
        sum(case when m.id = 'bitcoin' then m.market_cap end) as btc_market_cap,
        sum(case when m.id = 'ethereum' then m.market_cap end) as eth_market_cap,
        sum(case when s.id is not null then m.market_cap else 0 end) as stablecoin_market_cap
    from markets as m
    left join stablecoins as s on s.id = m.id
    left join derivatives as d on d.id = m.id
    group by m.snapshot_at
),

totals as (
    select
        p.*,
        case when g.snapshot_at is not null then 'global' else 'top_n' end as dominance_basis,
        coalesce(g.total_market_cap, p.tracked_market_cap) as total_market_cap,
        case when g.snapshot_at is not null then g.total_volume else p.tracked_volume end as total_volume,
        case when g.snapshot_at is not null then g.market_cap_change_percentage_24h
             else p.tracked_change * 100.0 / nullif(p.tracked_before, 0) end as market_cap_change_percentage_24h,
        g.btc_dominance_pct as coingecko_btc_pct,
        g.eth_dominance_pct as coingecko_eth_pct,
        case
            when g.snapshot_at is not null then null
            when r.snapshot_at is null then 'the /global call failed'
            else coalesce(r.unusable_reason, '/global has no plausible total market cap')
        end as basis_note
    from per_snapshot as p
    left join global_market as g on g.snapshot_at = p.snapshot_at
    left join global_row as r on r.snapshot_at = p.snapshot_at
),

shares as (
    select
        snapshot_at,
        source,
        coin_count,
        total_market_cap,
        total_volume,
        coalesce(coingecko_btc_pct, btc_market_cap * 100.0 / nullif(total_market_cap, 0)) as btc_dominance_pct,
        coalesce(coingecko_eth_pct, eth_market_cap * 100.0 / nullif(total_market_cap, 0)) as eth_dominance_pct,
        stablecoin_market_cap * 100.0 / nullif(total_market_cap, 0) as stablecoin_dominance_pct,
        dominance_basis,
        market_cap_change_percentage_24h,
        basis_note
    from totals
),

final as (
    select
        snapshot_at,
        source,
        coin_count,
        total_market_cap,
        total_volume,
        btc_dominance_pct,
        eth_dominance_pct,
        stablecoin_dominance_pct,
        case when total_market_cap > 0
             then 100.0 - coalesce(btc_dominance_pct, 0) - coalesce(eth_dominance_pct, 0)
                  - coalesce(stablecoin_dominance_pct, 0) end as others_dominance_pct,
        dominance_basis,
        market_cap_change_percentage_24h,
        basis_note
    from shares
)

select * from final
