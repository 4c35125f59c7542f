{#- activity_answers enriched: question, data type, option label and position, typed values.
    Values of fields the definition does not declare are left out (they stay in
    stg_alida__activity_answers). -#}
with answers as (
    select * from {{ ref('stg_alida__activity_answers') }}
),

questions as (
    select * from {{ ref('questions') }}
),

options as (
    select * from {{ ref('options') }}
)

select
    a.activity_id || '/' || a.response_id || '/' || a.field_id || '/' || cast(a.value_index as varchar) as answer_key,
    a.activity_id || '/' || a.response_id as response_key,
    q.question_key,
    o.option_key,
    a.activity_id,
    q.stream_name,
    a.response_id,
    a.member_id,
    a.field_id,
    q.position as question_position,
    q.question,
    q.data_type,
    q.question_kind,
    a.value_index,
    a.value_string,
    a.value_number,
    a.value_datetime,
    a.option_id,
    coalesce(a.option_label, o.option_label) as option_label,
    o.option_position,
    case
        when a.option_id is not null then 'option'
        when a.value_number is not null then 'number'
        when a.value_datetime is not null then 'datetime'
        when a.value_string is not null then 'string'
        else 'null'
    end as value_type
from answers a
inner join questions q on q.activity_id = a.activity_id and q.field_id = a.field_id
left join options o on o.activity_id = a.activity_id and o.field_id = a.field_id and o.option_id = a.option_id
