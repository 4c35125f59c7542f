{#- One row per response: the rows of each survey's own table (the stream named after the
    survey); a survey whose table was not loaded falls back to the responses that have values
    in activity_answers. -#}
{%- set tables = alida.alida_survey_tables() %}

with wide as (
    {%- for name, relation in tables %}
    select
        cast(activity_id as varchar) as activity_id,
        cast(response_id as varchar) as response_id,
        cast(member_id as varchar) as member_id
    from {{ relation }}
    {{ alida.alida_live_filter(relation) }}
    {{ "union all" if not loop.last }}
    {%- else %}
    select
        cast(null as varchar) as activity_id,
        cast(null as varchar) as response_id,
        cast(null as varchar) as member_id
    where 1 = 0
    {%- endfor %}
),

answers as (
    select * from {{ ref('stg_alida__activity_answers') }}
),

from_answers as (
    select distinct activity_id, response_id, member_id
    from answers
    where activity_id not in (select activity_id from wide)
),

all_responses as (
    select * from wide
    union all
    select * from from_answers
),

questions as (
    select activity_id, field_id, stream_name from {{ ref('stg_alida__activity_fields') }}
),

per_survey as (
    select activity_id, max(stream_name) as stream_name, count(*) as questions
    from questions
    group by activity_id
),

answered as (
    select a.activity_id, a.response_id, count(distinct a.field_id) as answered_questions
    from answers a
    inner join questions q on q.activity_id = a.activity_id and q.field_id = a.field_id
    where a.value_string is not null
        or a.value_number is not null
        or a.value_datetime is not null
        or a.option_id is not null
    group by a.activity_id, a.response_id
)

select
    r.activity_id || '/' || r.response_id as response_key,
    r.activity_id,
    s.stream_name,
    r.response_id,
    r.member_id,
    coalesce(n.answered_questions, 0) as answered_questions,
    coalesce(s.questions, 0) as questions,
    {{ alida.alida_ratio('coalesce(n.answered_questions, 0)', 's.questions') }} as answered_share
from all_responses r
left join per_survey s on s.activity_id = r.activity_id
left join answered n on n.activity_id = r.activity_id and n.response_id = r.response_id
