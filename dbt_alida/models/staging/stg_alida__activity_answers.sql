{{ alida.alida_staging('activity_answers', [
    ['activity_id', 'varchar'],
    ['response_id', 'varchar'],
    ['member_id', 'varchar'],
    ['field_id', 'varchar'],
    ['value_index', 'bigint'],
    ['value_string', 'varchar'],
    ['value_number', 'double precision'],
    ['value_datetime', 'timestamp'],
    ['option_id', 'varchar'],
    ['option_label', 'varchar'],
]) }}
