-- sector_ranking: every category of the newest sector snapshot (/coins/categories), ranked by market cap.
-- share_of_market_pct is of the whole market's cap from a usable, published /global: the one fetched by
-- the same pipeline run (the sector run id is the run's id + '-sectors'), else the newest before it.
-- tracked_coin_count: the sector's members (ref_sector_members) among the current mart's coins.
with

latest as (
    select max(snapshot_at) as snapshot_at
    from staging_sector_snapshot
),

sectors as (
    select s.*
    from staging_sector_snapshot as s
    inner join latest as l on s.snapshot_at = l.snapshot_at
),

usable_global as (
    select g.snapshot_at, g.run_id, g.total_market_cap
    from staging_global_market as g
    inner join snapshots as p on p.snapshot_at = g.snapshot_at and p.status = 'published'
    where g.total_market_cap > 0 and (g.usable is null or g.usable)  -- NULL: loaded before the age check
),

matched as (
    select coalesce(
        (
            select max(u.snapshot_at) from usable_global as u
            where u.run_id || '-sectors' = (select min(run_id) from sectors)
        ),
        (select max(u.snapshot_at) from usable_global as u cross join latest as l where u.snapshot_at <= l.snapshot_at)
    ) as global_snapshot_at
),

market as (
    select u.snapshot_at, u.total_market_cap
    from usable_global as u
    inner join matched as m on u.snapshot_at = m.global_snapshot_at
),

members as (
    select r.category_id, count(mart.id) as tracked_coin_count
    from ref_sector_members as r
    left join crypto_analytics_mart as mart on mart.id = r.coin_id
    group by r.category_id
),

ranked as (
    select
        s.*,
        case when s.market_cap is not null then
            row_number() over (
                order by case when s.market_cap is null then 1 else 0 end, s.market_cap desc, s.category_id
            )
        end as sector_rank
    from sectors as s
),

final as (
    select
        r.category_id,
        r.name,
        r.sector_rank,
        r.market_cap,
        r.market_cap * 100.0 / m.total_market_cap as share_of_market_pct,
        r.market_cap_change_24h,
        r.volume_24h,
        mem.tracked_coin_count,
        case when mem.category_id is not null then 1 = 1 else 1 = 0 end as is_tracked,
        r.top_3_coins,
        r.snapshot_at,
        m.snapshot_at as global_snapshot_at
    from ranked as r
    left join market as m on 1 = 1
    left join members as mem on mem.category_id = r.category_id
)

select * from final
