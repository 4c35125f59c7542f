{#- responses per survey = live rows of that survey's own table (the stream named after it). -#}
{%- set tables = alida.alida_survey_tables() %}
with raw as (
    {%- for name, relation in tables %}
    select cast(activity_id as varchar) as activity_id, count(*) as raw_rows
    from {{ relation }}
    {{ alida.alida_live_filter(relation) }}
    group by activity_id
    {{ "union all" if not loop.last }}
    {%- else %}
    select cast(null as varchar) as activity_id, cast(0 as bigint) as raw_rows where 1 = 0
    {%- endfor %}
),

modelled as (
    select activity_id, count(*) as responses
    from {{ ref('responses') }}
    where activity_id in (select activity_id from raw)
    group by activity_id
)

select coalesce(r.activity_id, m.activity_id) as activity_id, r.raw_rows, m.responses
from raw r
full outer join modelled m on m.activity_id = r.activity_id
where coalesce(r.raw_rows, 0) <> coalesce(m.responses, 0)
