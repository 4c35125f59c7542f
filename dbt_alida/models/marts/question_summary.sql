{#- One row per survey × question: who answered it, and what they answered (numbers:
    count, mean, median, min, max; choices: the distribution by option in survey order). -#}
with questions as (
    select * from {{ ref('questions') }}
),

answers as (
    select * from {{ ref('answers') }}
    where value_type <> 'null'
),

responses as (
    select activity_id, count(*) as responses
    from {{ ref('responses') }}
    group by activity_id
),

answered as (
    select
        question_key,
        count(distinct response_id) as respondents,
        count(*) as answer_values
    from answers
    group by question_key
),

numbers as (
    select
        question_key,
        count(value_number) as number_count,
        avg(value_number) as number_mean,
        {{ alida.alida_median('value_number') }} as number_median,
        min(value_number) as number_min,
        max(value_number) as number_max
    from answers
    where value_number is not null
    group by question_key
),

distribution as (
    select
        question_key,
        string_agg(option_label || ': ' || cast(option_respondents as varchar), '; ' order by option_position) as option_distribution
    from {{ ref('option_summary') }}
    group by question_key
)

select
    q.question_key,
    q.activity_id,
    q.stream_name,
    q.field_id,
    q.position,
    q.question,
    q.data_type,
    q.question_kind,
    coalesce(r.responses, 0) as responses,
    coalesce(a.respondents, 0) as respondents,
    {{ alida.alida_ratio('coalesce(a.respondents, 0)', 'r.responses') }} as answered_share,
    coalesce(a.answer_values, 0) as answer_values,
    n.number_count,
    n.number_mean,
    n.number_median,
    n.number_min,
    n.number_max,
    d.option_distribution
from questions q
left join responses r on r.activity_id = q.activity_id
left join answered a on a.question_key = q.question_key
left join numbers n on n.question_key = q.question_key
left join distribution d on d.question_key = q.question_key
