{#- The few statements DuckDB and PostgreSQL spell differently (adapter.dispatch). -#}

{#- One row per element of a JSON array column: `position` (0-based, the array's order) and
    `element` (JSON text). `relation_sql` is a select with the array in `json_column`. -#}
{% macro alida_json_elements(relation_sql, key_columns, json_column) -%}
    {{ return(adapter.dispatch('alida_json_elements', 'alida')(relation_sql, key_columns, json_column)) }}
{%- endmacro %}

{% macro default__alida_json_elements(relation_sql, key_columns, json_column) -%}
    select
        {% for c in key_columns %}s.{{ c }}, {% endfor %}
        cast(e.ordinality - 1 as bigint) as position,
        e.element
    from ({{ relation_sql }}) s
    cross join lateral jsonb_array_elements(cast(s.{{ json_column }} as jsonb)) with ordinality as e(element, ordinality)
    where jsonb_typeof(cast(s.{{ json_column }} as jsonb)) = 'array'
{%- endmacro %}

{% macro duckdb__alida_json_elements(relation_sql, key_columns, json_column) -%}
    select
        {% for c in key_columns %}u.{{ c }}, {% endfor %}
        cast(u.position as bigint) as position,
        json_extract(cast(u.{{ json_column }} as json), cast(u.position as integer)) as element
    from (
        select s.*, unnest(range(cast(json_array_length(cast(s.{{ json_column }} as json)) as bigint))) as position
        from ({{ relation_sql }}) s
        where json_type(cast(s.{{ json_column }} as json)) = 'ARRAY'
    ) u
{%- endmacro %}

{#- A text member of a JSON object (as returned by alida_json_elements). -#}
{% macro alida_json_text(element, key) -%}
    {{ return(adapter.dispatch('alida_json_text', 'alida')(element, key)) }}
{%- endmacro %}

{% macro default__alida_json_text(element, key) -%}
    ({{ element }} ->> '{{ key }}')
{%- endmacro %}

{% macro duckdb__alida_json_text(element, key) -%}
    json_extract_string({{ element }}, '$.{{ key }}')
{%- endmacro %}

{#- The median of a numeric expression (an ordered-set aggregate on both engines). -#}
{% macro alida_median(expression) -%}
    percentile_cont(0.5) within group (order by {{ expression }})
{%- endmacro %}

{#- a / b as a fraction (null when b is 0), double precision on both engines. -#}
{% macro alida_ratio(numerator, denominator) -%}
    cast({{ numerator }} as double precision) / nullif(cast({{ denominator }} as double precision), 0)
{%- endmacro %}

{#- JSON text of a column holding a JSON array: target-duckdb stores JSON, target-postgres an
    SQL array of jsonb (jsonb[]), another loader may store json/jsonb or text. -#}
{% macro alida_json_as_text(expression, dtype) -%}
    {{ return(adapter.dispatch('alida_json_as_text', 'alida')(expression, dtype)) }}
{%- endmacro %}

{% macro default__alida_json_as_text(expression, dtype) -%}
    {%- if dtype | upper == 'ARRAY' or dtype.startswith('_') or dtype.endswith('[]') -%}
        cast(array_to_json({{ expression }}) as varchar)
    {%- else -%}
        cast({{ expression }} as varchar)
    {%- endif -%}
{%- endmacro %}

{% macro duckdb__alida_json_as_text(expression, dtype) -%}
    {%- if dtype | upper in ('JSON', 'VARCHAR', 'TEXT', '') -%}
        cast({{ expression }} as varchar)
    {%- else -%}
        cast(to_json({{ expression }}) as varchar)
    {%- endif -%}
{%- endmacro %}
