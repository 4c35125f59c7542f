{#- One row per survey × choice question × option, in survey order: how many responses
    picked it, and their share of the question's respondents. Options no one picked are
    there with 0. -#}
with options as (
    select * from {{ ref('options') }}
),

questions as (
    select * from {{ ref('questions') }}
),

answers as (
    select * from {{ ref('answers') }}
    where option_id is not null
),

picked as (
    select option_key, count(*) as option_answers, count(distinct response_id) as option_respondents
    from answers
    where option_key is not null
    group by option_key
),

respondents as (
    select question_key, count(distinct response_id) as question_respondents
    from answers
    group by question_key
)

select
    o.option_key,
    o.question_key,
    o.activity_id,
    q.stream_name,
    o.field_id,
    q.question,
    q.question_kind,
    o.option_position,
    o.option_id,
    o.option_label,
    o.option_visibility,
    coalesce(p.option_answers, 0) as option_answers,
    coalesce(p.option_respondents, 0) as option_respondents,
    coalesce(r.question_respondents, 0) as question_respondents,
    {{ alida.alida_ratio('coalesce(p.option_respondents, 0)', 'r.question_respondents') }} as option_share
from options o
inner join questions q on q.question_key = o.question_key
left join picked p on p.option_key = o.option_key
left join respondents r on r.question_key = o.question_key
