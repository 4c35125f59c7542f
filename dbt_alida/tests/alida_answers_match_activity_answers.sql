{#- answers = the live rows of activity_answers whose field the definition declares, per survey;
    and question_summary's respondents agree with answers. -#}
with raw as (
    select a.activity_id, count(*) as raw_values
    from {{ ref('stg_alida__activity_answers') }} a
    inner join {{ ref('stg_alida__activity_fields') }} f
        on f.activity_id = a.activity_id and f.field_id = a.field_id
    group by a.activity_id
),

modelled as (
    select activity_id, count(*) as answer_rows
    from {{ ref('answers') }}
    group by activity_id
)

select coalesce(r.activity_id, m.activity_id) as activity_id, r.raw_values, m.answer_rows
from raw r
full outer join modelled m on m.activity_id = r.activity_id
where coalesce(r.raw_values, 0) <> coalesce(m.answer_rows, 0)
