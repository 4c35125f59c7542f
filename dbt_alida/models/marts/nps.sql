{#- Net Promoter Score per survey × 0-10 question: promoters (9-10), passives (7-8),
    detractors (0-6), score = 100 × (promoters - detractors) / respondents.
    The questions: var alida_nps_questions (field ids or question texts); when empty, every
    `double` question whose text mentions "recommend" and whose answers are all whole
    numbers from 0 to 10. -#}
{%- set chosen = var('alida_nps_questions', []) %}

with answers as (
    select * from {{ ref('answers') }}
    where value_number is not null
),

candidates as (
    select question_key
    from answers
    {%- if chosen %}
    where field_id in ({% for q in chosen %}'{{ q | replace("'", "''") }}'{{ ", " if not loop.last }}{% endfor %})
        or question in ({% for q in chosen %}'{{ q | replace("'", "''") }}'{{ ", " if not loop.last }}{% endfor %})
    group by question_key
    {%- else %}
    where data_type = 'double' and lower(question) like '%recommend%'
    group by question_key
    having min(value_number) >= 0
        and max(value_number) <= 10
        and sum(case when value_number = floor(value_number) then 0 else 1 end) = 0
    {%- endif %}
),

scores as (
    select
        a.question_key,
        min(a.activity_id) as activity_id,
        min(a.stream_name) as stream_name,
        min(a.field_id) as field_id,
        min(a.question) as question,
        count(distinct a.response_id) as respondents,
        count(distinct case when a.value_number >= 9 then a.response_id end) as promoters,
        count(distinct case when a.value_number >= 7 and a.value_number < 9 then a.response_id end) as passives,
        count(distinct case when a.value_number < 7 then a.response_id end) as detractors
    from answers a
    inner join candidates c on c.question_key = a.question_key
    where a.value_index = 0
    group by a.question_key
)

select
    question_key,
    activity_id,
    stream_name,
    field_id,
    question,
    respondents,
    promoters,
    passives,
    detractors,
    100 * {{ alida.alida_ratio('promoters - detractors', 'respondents') }} as nps
from scores
