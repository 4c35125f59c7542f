{#- One row per survey × question (field), from the data dictionary. -#}
select
    activity_id || '/' || field_id as question_key,
    activity_id,
    field_id,
    stream_name,
    position,
    column_name,
    name as question,
    lower(data_type) as data_type,
    case lower(data_type)
        when 'enum' then 'choice'
        when 'set' then 'multi_choice'
        when 'double' then 'number'
        when 'date-time' then 'datetime'
        when 'datetime' then 'datetime'
        when 'string' then 'text'
        when 'identifier' then 'text'
        else 'other'
    end as question_kind,
    visibility
from {{ ref('stg_alida__activity_fields') }}
