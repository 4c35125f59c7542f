{{ alida.alida_staging('activity_fields', [
    ['activity_id', 'varchar'],
    ['field_id', 'varchar'],
    ['stream_name', 'varchar'],
    ['position', 'bigint'],
    ['column_name', 'varchar'],
    ['name', 'varchar'],
    ['data_type', 'varchar'],
    ['visibility', 'varchar'],
    ['options', 'json'],
]) }}
