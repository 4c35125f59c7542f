{#- The current member profile, one row per member: member_profiles' columns (one per member
    variable), the row with the latest last_sync_date when a member appears twice. -#}
{%- set staged = ref('stg_alida__member_profiles') %}
{%- if execute %}
    {%- set names = [] %}
    {%- for column in adapter.get_columns_in_relation(staged) %}{% do names.append(column.name) %}{% endfor %}
{%- else %}
    {%- set names = ['member_id'] %}
{%- endif %}
{%- set order = 'last_sync_date desc' if 'last_sync_date' in (names | map('lower') | list) else 'member_id' %}

with ranked as (
    select
        *,
        row_number() over (partition by member_id order by {{ order }}) as alida_row
    from {{ staged }}
)

select
    {%- for name in names %}
    {{ adapter.quote(name) }}{{ "," if not loop.last }}
    {%- endfor %}
from ranked
where alida_row = 1
