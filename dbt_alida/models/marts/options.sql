{#- One row per survey × question × option, in the order the definition lists them. -#}
{%- set fields -%}
    select activity_id, field_id, options
    from {{ ref('stg_alida__activity_fields') }}
    where options is not null
{%- endset %}

with elements as (
    {{ alida.alida_json_elements(fields, ['activity_id', 'field_id'], 'options') }}
)

select
    activity_id || '/' || field_id || '/' || cast(position as varchar) as option_key,
    activity_id || '/' || field_id as question_key,
    activity_id,
    field_id,
    position as option_position,
    {{ alida.alida_json_text('element', 'id') }} as option_id,
    {{ alida.alida_json_text('element', 'name') }} as option_label,
    {{ alida.alida_json_text('element', 'visibility') }} as option_visibility,
    {{ alida.alida_json_text('element', 'indicator_column') }} as indicator_column
from elements
