{#- One row per survey in scope: from activity_fields (every survey the tap exported a
    definition of) and activities (in_scope), whichever were loaded. -#}
with fields as (
    select activity_id, max(stream_name) as stream_name, count(*) as questions
    from {{ ref('stg_alida__activity_fields') }}
    group by activity_id
),

activities as (
    select * from {{ ref('stg_alida__activities') }}
),

ids as (
    select activity_id from fields
    union
    select activity_id from activities where in_scope
),

responses as (
    select activity_id, count(*) as responses, avg(answered_share) as avg_answered_share
    from {{ ref('responses') }}
    group by activity_id
)

select
    ids.activity_id,
    coalesce(a.stream_name, f.stream_name) as stream_name,
    a.name as survey_name,
    a.status,
    a.create_date,
    a.closed_on,
    coalesce(f.questions, 0) as questions,
    coalesce(r.responses, 0) as responses,
    r.avg_answered_share
from ids
left join fields f on f.activity_id = ids.activity_id
left join activities a on a.activity_id = ids.activity_id
left join responses r on r.activity_id = ids.activity_id
