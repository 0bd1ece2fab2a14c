-- crypto_analytics_mart: one row per coin in the newest published snapshot of staging_crypto_market
-- (a snapshot the plausibility gate held back stays in silver and never reaches gold).
-- Dominance basis 'global': the snapshot has a usable /global (CoinGecko's whole market, updated
-- within PIPELINE_GLOBAL_MAX_AGE_MINUTES of the coins). A coin's dominance is then CoinGecko's own
-- market_cap_percentage where /global lists its symbol and the coin is the highest-market-cap coin
-- with that symbol in the snapshot, else its market cap over /global's total.
-- Basis 'top_n' (no usable /global; basis_note says why): shares of the tracked coins' total,
-- leaving out derivative tokens (wrapped, liquid staking, bridged in ref_coin_classes) so no value
-- is counted twice. basis_total_* are the totals of the basis (the dashboard never recomputes them).
with

latest as (
    select max(snapshot_at) as snapshot_at
    from snapshots
    where status = 'published'
),

markets as (  -- symbol_position 1: the highest-market-cap coin of its symbol, the one /global's symbol means
    select
        m.*,
        case when m.symbol is not null then row_number() over (
            partition by lower(m.symbol)
            order by case when m.market_cap is null then 1 else 0 end, m.market_cap desc, m.market_cap_rank, m.id
        ) end as symbol_position
    from staging_crypto_market as m
    inner join latest as l on m.snapshot_at = l.snapshot_at
),

global_row as (
    select g.total_market_cap, g.total_volume, g.market_cap_change_percentage_24h, g.usable, g.unusable_reason
    from staging_global_market as g
    inner join latest as l on g.snapshot_at = l.snapshot_at
),

global_market as (
    select total_market_cap, total_volume, market_cap_change_percentage_24h
    from global_row
    where total_market_cap > 0 and (usable is null or usable)  -- NULL: loaded before the age check existed
),

basis_note as (
    select case
        when not exists (select 1 from global_row) then 'the /global call failed'
        when exists (select 1 from global_market) then null
        else coalesce((select unusable_reason from global_row), '/global has no plausible total market cap')
    end as note
),

coingecko_dominance as (
    select d.symbol, d.dominance_pct
    from staging_global_dominance as d
    inner join latest as l on d.snapshot_at = l.snapshot_at
    where d.dominance_pct is not null
),

derivatives as (
    select distinct id from ref_coin_classes where coin_class in ('wrapped', 'liquid_staking', 'bridged')
),

tracked as (  -- the top-N fallback: tracked coins, derivative tokens left out
    select
        sum(market_cap) as total_market_cap,
        sum(total_volume) as total_volume,
        sum(case when market_cap is not null and market_cap_change_24h is not null then market_cap_change_24h end)
            * 100.0
            / nullif(sum(case when market_cap is not null and market_cap_change_24h is not null
                              then market_cap - market_cap_change_24h end), 0) as market_cap_change_percentage_24h
    from markets
    where id not in (select id from derivatives)
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
            when g.total_market_cap is not null then coalesce(cd.dominance_pct, m.market_cap * 100.0 / g.total_market_cap)
            -- top N: a derivative token has no share of its own (its value is the wrapped coin's),
            -- so the shares of the rest add up to 100 % of the total they are measured against
            when t.total_market_cap > 0 and m.id not in (select id from derivatives)
                then m.market_cap * 100.0 / t.total_market_cap
        end as market_dominance_pct,
        case when g.total_market_cap is not null then 'global' else 'top_n' end as dominance_basis,
        coalesce(g.total_market_cap, t.total_market_cap) as basis_total_market_cap,
        case when g.total_market_cap is not null then g.total_volume else t.total_volume end as basis_total_volume,
        case when g.total_market_cap is not null then g.market_cap_change_percentage_24h
             else t.market_cap_change_percentage_24h end as basis_market_cap_change_percentage_24h,
        n.note as basis_note,
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
    cross join basis_note as n
    left join global_market as g on 1 = 1
    -- no self-join of the snapshot (a nested loop over 17,000 x 17,000 rows when the planner misjudges a fresh partition)
    left join coingecko_dominance as cd on m.symbol_position = 1 and cd.symbol = lower(m.symbol)
    left join sparklines as s on s.id = m.id and s.snapshot_at = m.snapshot_at
)

select * from final
