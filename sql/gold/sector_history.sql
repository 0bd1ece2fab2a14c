-- sector_history: the share of the whole market over time of the tracked sectors (those with members in
-- ref_sector_members) and of each snapshot's ten largest sectors, one row per sector and sector snapshot.
-- The share is of a usable, published /global's total market cap: the one fetched by the same pipeline
-- run (the sector run id is the run's id + '-sectors'), else the newest before the sector snapshot.
-- Incremental: the "since" parameter is the oldest snapshot a run added; older rows are kept as they are.
with

sector_rows as (
    select
        s.*,
        row_number() over (
            partition by s.snapshot_at
            order by case when s.market_cap is null then 1 else 0 end, s.market_cap desc, s.category_id
        ) as position
    from staging_sector_snapshot as s
    where s.snapshot_at >= :since
),

tracked as (
    select distinct category_id
    from ref_sector_members
),

sector_snapshots as (
    select snapshot_at, min(run_id) as run_id
    from sector_rows
    group by snapshot_at
),

usable_global as (
    select g.snapshot_at, g.run_id, g.total_market_cap
    from staging_global_market as g
    inner join snapshots as p on p.snapshot_at = g.snapshot_at and p.status = 'published'
    where g.total_market_cap > 0 and (g.usable is null or g.usable)  -- NULL: loaded before the age check
),

matched as (
    select
        s.snapshot_at,
        coalesce(
            (select max(u.snapshot_at) from usable_global as u where u.run_id || '-sectors' = s.run_id),
            (select max(u.snapshot_at) from usable_global as u where u.snapshot_at <= s.snapshot_at)
        ) as global_snapshot_at
    from sector_snapshots as s
),

market as (
    select m.snapshot_at, u.total_market_cap
    from matched as m
    inner join usable_global as u on u.snapshot_at = m.global_snapshot_at
),

final as (
    select
        r.category_id,
        r.snapshot_at,
        r.name,
        r.market_cap,
        r.market_cap * 100.0 / m.total_market_cap as share_of_market_pct,
        r.market_cap_change_24h,
        r.volume_24h
    from sector_rows as r
    left join market as m on m.snapshot_at = r.snapshot_at
    where r.position <= 10 or r.category_id in (select category_id from tracked)
)

select * from final
