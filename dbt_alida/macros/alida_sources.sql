{#- Reading the tap's tables whatever the project selected and whichever target loaded them.

    A stream that was not selected has no table: its staging model is then an empty
    relation of the same columns, and one message says so (no SQL error downstream).
    Rows a target marked deleted (_sdc_deleted_at, target-postgres' soft delete) are left
    out wherever that column exists; BATCH loads and target-duckdb have none. -#}

{% macro alida_table_name(stream) -%}
    {{- return(var('alida_tables', {}).get(stream, stream)) -}}
{%- endmacro %}

{% macro alida_existing(relation) -%}
    {#- The relation as the warehouse has it, or none. -#}
    {%- if not execute -%}{{ return(none) }}{%- endif -%}
    {{ return(adapter.get_relation(database=relation.database, schema=relation.schema, identifier=relation.identifier)) }}
{%- endmacro %}

{% macro alida_columns(relation) -%}
    {%- set names = [] -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
        {%- do names.append(column.name) -%}
    {%- endfor -%}
    {{ return(names) }}
{%- endmacro %}

{% macro alida_live_filter(relation, columns=none) -%}
    {%- set names = columns if columns is not none else alida.alida_columns(relation) -%}
    {%- if '_sdc_deleted_at' in (names | map('lower') | list) -%}
        where {{ adapter.quote('_sdc_deleted_at') }} is null
    {%- endif -%}
{%- endmacro %}

{% macro alida_absent(stream, relation) -%}
    {%- if execute -%}
        {%- set present = [] -%}
        {%- for name in ['activities', 'activity_fields', 'activity_answers', 'member_profiles', 'member_profile_values'] -%}
            {%- set other = adapter.get_relation(database=relation.database, schema=relation.schema,
                                                 identifier=alida.alida_table_name(name)) -%}
            {%- if other is not none -%}{%- do present.append(name) -%}{%- endif -%}
        {%- endfor -%}
        {%- if not present -%}
            {{ exceptions.raise_compiler_error("alida: no table of tap-alida in " ~ relation.database ~ "." ~ relation.schema
               ~ ": set the var alida_schema (or DBT_ALIDA_SCHEMA) to the schema the tap loaded.") }}
        {%- endif -%}
        {{ log("alida: " ~ relation ~ " does not exist (stream " ~ stream ~ " not selected or not loaded yet): "
               ~ this.identifier ~ " is built empty.", info=True) }}
    {%- endif -%}
{%- endmacro %}

{#- A staging select: `columns` is a list of [name, type] or [name, type, alias]; each is
    cast to its type, so both engines and every loader give the same shapes. Type `json`:
    JSON text of an array, however the loader stored it (DuckDB JSON, PostgreSQL jsonb[]). -#}
{% macro alida_staging(stream, columns) -%}
    {%- set declared = source('alida', stream) -%}
    {%- set found = alida.alida_existing(declared) -%}
    {%- if execute and found is none -%}
        {{ alida.alida_absent(stream, declared) }}
        select
        {%- for column in columns %}
            cast(null as {{ 'varchar' if column[1] == 'json' else column[1] }}) as {{ column[2] if column | length > 2 else column[0] }}{{ "," if not loop.last }}
        {%- endfor %}
        where 1 = 0
    {%- else -%}
        {%- set types = {} -%}
        {%- if execute -%}
            {%- for c in adapter.get_columns_in_relation(found) -%}{%- do types.update({c.name | lower: c.dtype}) -%}{%- endfor -%}
        {%- endif %}
        select
        {%- for column in columns %}
            {%- if column[1] == 'json' %}
            {{ alida.alida_json_as_text(adapter.quote(column[0]), types.get(column[0], '')) }}
            {%- else %}
            cast({{ adapter.quote(column[0]) }} as {{ column[1] }})
            {%- endif %} as {{ column[2] if column | length > 2 else column[0] }}{{ "," if not loop.last }}
        {%- endfor %}
        from {{ declared }}
        {% if execute %}{{ alida.alida_live_filter(found) }}{% endif %}
    {%- endif -%}
{%- endmacro %}

{#- Every column but the target's _sdc_* metadata (member_profiles: one column per member
    variable, which differ from community to community); `required` when the table is absent. -#}
{% macro alida_staging_all(stream, required) -%}
    {%- set declared = source('alida', stream) -%}
    {%- set found = alida.alida_existing(declared) -%}
    {%- if execute and found is none -%}
        {{ alida.alida_absent(stream, declared) }}
        select
        {%- for name, type in required %}
            cast(null as {{ type }}) as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
        where 1 = 0
    {%- elif execute -%}
        {%- set names = alida.alida_columns(found) -%}
        select
        {%- for name in names if not name.lower().startswith('_sdc_') %}
            {{ adapter.quote(name) }}{{ "," if not loop.last }}
        {%- endfor %}
        from {{ declared }}
        {{ alida.alida_live_filter(found, names) }}
    {%- else -%}
        select * from {{ declared }}
    {%- endif -%}
{%- endmacro %}

{#- The wide per-survey tables that exist: [(stream_name, relation)], in name order. Their
    names come from activity_fields and activities (whichever exist). -#}
{% macro alida_survey_tables() -%}
    {%- if not execute -%}{{ return([]) }}{%- endif -%}
    {%- set queries = [] -%}
    {%- set fields = alida.alida_existing(source('alida', 'activity_fields')) -%}
    {%- if fields is not none -%}
        {%- do queries.append("select stream_name from " ~ fields ~ " " ~ alida.alida_live_filter(fields)) -%}
    {%- endif -%}
    {%- set activities = alida.alida_existing(source('alida', 'activities')) -%}
    {%- if activities is not none -%}
        {%- set live = alida.alida_live_filter(activities) -%}
        {%- do queries.append("select stream_name from " ~ activities ~ " "
              ~ (live ~ " and in_scope" if live else "where in_scope")) -%}
    {%- endif -%}
    {%- if not queries -%}{{ return([]) }}{%- endif -%}
    {%- set names = run_query("select distinct stream_name from (" ~ queries | join(" union all ") ~ ") s "
          ~ "where stream_name is not null order by 1").columns[0].values() -%}
    {%- set declared = source('alida', 'activity_fields') -%}
    {%- set tables = [] -%}
    {%- for name in names -%}
        {%- set found = adapter.get_relation(database=declared.database, schema=declared.schema, identifier=name) -%}
        {%- if found is not none -%}{%- do tables.append((name, found)) -%}{%- endif -%}
    {%- endfor -%}
    {{ return(tables) }}
{%- endmacro %}
